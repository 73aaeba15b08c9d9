class Stack {
  #items = [];

  push(value) {
    this.#items.push(value);
    return this;
  }

  pop() {
    if (this.#items.length === 0) throw new Error("stack is empty");
    return this.#items.pop();
  }

  peek() {
    return this.#items[this.#items.length - 1];
  }

  get size() {
    return this.#items.length;
  }
}

const s = new Stack().push(1).push(2);
console.log(s.pop(), s.size); // 2 1
