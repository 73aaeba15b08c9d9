#!/usr/bin/env bash
# Wait until a TCP port accepts connections, or give up after a timeout.
host="${1:-127.0.0.1}"; port="${2:-8080}"; timeout="${3:-30}"
for ((i = 0; i < timeout; i++)); do
  if (echo > "/dev/tcp/$host/$port") 2>/dev/null; then
    echo "port $port on $host is open"
    exit 0
  fi
  sleep 1
done
echo "timed out after ${timeout}s waiting for $host:$port" >&2
exit 1
