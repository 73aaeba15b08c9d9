// 深拷贝普通对象和数组（不处理函数和循环引用）
function deepClone(value) {
  if (Array.isArray(value)) {
    return value.map(deepClone);
  }
  if (value && typeof value === "object") {
    const copy = {};
    for (const [k, v] of Object.entries(value)) {
      copy[k] = deepClone(v);
    }
    return copy;
  }
  return value;
}

const original = { a: [1, { b: 2 }] };
const cloned = deepClone(original);
cloned.a[1].b = 99;
console.log(original.a[1].b); // 2
