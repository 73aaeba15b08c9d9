// Escape text before inserting it into HTML to prevent markup injection.
const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => ENTITIES[ch]);
}

console.log(escapeHtml('<img src=x onerror="alert(1)">'));
