#!/usr/bin/env bash
# 当任一分区的使用率超过阈值时打印警告
threshold="${1:-90}"
df -P | awk -v t="$threshold" 'NR > 1 {
  gsub("%", "", $5)
  if ($5 + 0 >= t) printf "warning: %s is %s%% full (mounted on %s)\n", $1, $5, $6
}'
