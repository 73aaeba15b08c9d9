#!/usr/bin/env bash
# 从 JSON Lines 文件中取出 type 为 city 的记录，打印中英文名称
jq -r 'select(.type == "city") | [.name_zh, .name_en] | @tsv' "${1:-entities.jsonl}" \
  | sort -k2 \
  | head -n 20
