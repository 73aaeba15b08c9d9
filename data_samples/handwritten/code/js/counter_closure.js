// A counter built with a closure: the count variable is private.
function makeCounter(start = 0, step = 1) {
  let count = start;
  return {
    next() {
      count += step;
      return count;
    },
    reset() {
      count = start;
    },
  };
}

const c = makeCounter(10, 5);
c.next();
console.log(c.next()); // 20
