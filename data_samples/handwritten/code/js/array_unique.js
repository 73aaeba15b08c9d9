// Remove duplicates from an array while keeping the first occurrence order.
function unique(values) {
  const seen = new Set();
  return values.filter((v) => {
    if (seen.has(v)) return false;
    seen.add(v);
    return true;
  });
}

console.log(unique([3, 1, 3, 2, 1])); // [3, 1, 2]
