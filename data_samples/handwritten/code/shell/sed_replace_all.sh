#!/usr/bin/env bash
# 在所有 Markdown 文件中把旧的项目名替换成新名字，并保留 .bak 备份
old="${1:?usage: sed_replace_all.sh OLD NEW}"
new="${2:?usage: sed_replace_all.sh OLD NEW}"
grep -rl --include='*.md' -- "$old" . | while IFS= read -r f; do
  sed -i.bak "s/${old}/${new}/g" "$f"
  echo "updated $f"
done
