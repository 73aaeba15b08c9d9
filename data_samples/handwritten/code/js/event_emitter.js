class Emitter {
  constructor() {
    this.handlers = new Map();
  }
  on(name, fn) {
    if (!this.handlers.has(name)) this.handlers.set(name, []);
    this.handlers.get(name).push(fn);
    return () => this.off(name, fn);
  }
  off(name, fn) {
    const list = this.handlers.get(name) || [];
    this.handlers.set(name, list.filter((h) => h !== fn));
  }
  emit(name, ...args) {
    for (const fn of this.handlers.get(name) || []) fn(...args);
  }
}

const bus = new Emitter();
const stop = bus.on("tick", (n) => console.log("tick", n));
bus.emit("tick", 1);
stop();
bus.emit("tick", 2); // nothing printed
