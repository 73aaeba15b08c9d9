// 节流：在 intervalMs 毫秒内最多执行一次 fn
function throttle(fn, intervalMs) {
  let last = 0;
  return function (...args) {
    const now = Date.now();
    if (now - last >= intervalMs) {
      last = now;
      return fn.apply(this, args);
    }
  };
}

const onScroll = throttle(() => console.log("scroll at", Date.now()), 100);
