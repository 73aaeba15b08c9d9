#!/usr/bin/env bash
# Rename every file in the current folder to lower case (skips names that would collide).
for f in *; do
  [ -f "$f" ] || continue
  lower="$(printf '%s' "$f" | tr '[:upper:]' '[:lower:]')"
  if [ "$f" != "$lower" ] && [ ! -e "$lower" ]; then
    mv -- "$f" "$lower"
  fi
done
