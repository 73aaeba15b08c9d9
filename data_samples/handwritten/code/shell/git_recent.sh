#!/usr/bin/env bash
# 列出最近 7 天内每位作者的提交次数
git log --since="7 days ago" --pretty=format:'%an' \
  | sort | uniq -c | sort -rn
