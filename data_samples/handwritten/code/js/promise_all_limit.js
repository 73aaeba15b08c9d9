// Run async tasks with at most `limit` of them in flight at once.
async function runLimited(tasks, limit) {
  const results = new Array(tasks.length);
  let next = 0;
  async function worker() {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  }
  const workers = Array.from({ length: Math.min(limit, tasks.length) }, worker);
  await Promise.all(workers);
  return results;
}

const sleep = (ms, v) => () => new Promise((r) => setTimeout(() => r(v), ms));
runLimited([sleep(30, "a"), sleep(10, "b"), sleep(20, "c")], 2).then(console.log);
