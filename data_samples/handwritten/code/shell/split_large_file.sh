#!/usr/bin/env bash
# Split a large text file into parts of 100000 lines and gzip each part.
set -euo pipefail
input="${1:?usage: split_large_file.sh FILE}"
split -l 100000 -d -a 3 "$input" "${input}.part-"
for part in "${input}".part-*; do
  gzip -9 "$part"
done
ls -lh "${input}".part-*.gz
