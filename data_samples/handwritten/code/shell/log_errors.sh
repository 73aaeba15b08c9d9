#!/usr/bin/env bash
# 统计日志文件中每小时出现的 ERROR 行数
log="${1:-app.log}"
grep 'ERROR' "$log" \
  | awk '{ split($2, t, ":"); print $1 " " t[1] ":00" }' \
  | sort | uniq -c
