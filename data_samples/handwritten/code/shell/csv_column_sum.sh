#!/usr/bin/env bash
# Sum the third column of a CSV file, skipping the header line.
awk -F',' 'NR > 1 { total += $3 } END { printf "%.2f\n", total }' "${1:-data.csv}"
