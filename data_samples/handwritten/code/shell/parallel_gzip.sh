#!/usr/bin/env bash
# Compress all .log files older than one day, four at a time.
find /var/log/myapp -name '*.log' -mtime +1 -print0 \
  | xargs -0 -n 1 -P 4 gzip -9
