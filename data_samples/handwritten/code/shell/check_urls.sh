#!/usr/bin/env bash
# Print the HTTP status code of every URL listed (one per line) in a text file.
while IFS= read -r url; do
  [ -z "$url" ] && continue
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url")"
  printf '%s %s\n' "$code" "$url"
done < "${1:-urls.txt}"
