#!/usr/bin/env bash
# 把指定目录打包成带日期的压缩文件，只保留最近 7 份备份
set -euo pipefail
src="${1:?usage: backup_dir.sh DIR}"
dest="${BACKUP_DIR:-$HOME/backups}"
mkdir -p "$dest"
stamp="$(date +%Y%m%d-%H%M%S)"
tar -czf "$dest/$(basename "$src")-$stamp.tar.gz" -C "$(dirname "$src")" "$(basename "$src")"
ls -1t "$dest"/*.tar.gz | tail -n +8 | xargs -r rm --
