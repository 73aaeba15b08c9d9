#!/usr/bin/env bash
# Count files per extension below the current directory, most common first.
find . -type f -name '*.*' \
  | sed -E 's/.*\.([^./]+)$/\1/' \
  | sort \
  | uniq -c \
  | sort -rn \
  | head -20
