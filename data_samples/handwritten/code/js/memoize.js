// Cache the results of a one-argument function.
function memoize(fn) {
  const cache = new Map();
  return (arg) => {
    if (!cache.has(arg)) cache.set(arg, fn(arg));
    return cache.get(arg);
  };
}

const slowSquare = (n) => {
  for (let i = 0; i < 1e7; i++);
  return n * n;
};
const fastSquare = memoize(slowSquare);
console.log(fastSquare(12), fastSquare(12)); // second call comes from the cache
