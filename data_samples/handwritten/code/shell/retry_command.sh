#!/usr/bin/env bash
# 重试一条命令，最多 5 次，每次失败后等待的时间翻倍
attempt=1
delay=1
until "$@"; do
  if [ "$attempt" -ge 5 ]; then
    echo "failed after $attempt attempts: $*" >&2
    exit 1
  fi
  echo "attempt $attempt failed, retrying in ${delay}s" >&2
  sleep "$delay"
  attempt=$((attempt + 1))
  delay=$((delay * 2))
done
