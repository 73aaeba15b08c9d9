function formatBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

console.log(formatBytes(512), formatBytes(2048), formatBytes(5 * 1024 ** 3));
// 512 B 2.0 KB 5.0 GB
