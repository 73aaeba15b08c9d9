// 给任意 Promise 加上超时：超时后以错误结束
function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

withTimeout(new Promise((r) => setTimeout(() => r("done"), 50)), 1000)
  .then(console.log)
  .catch(console.error);
