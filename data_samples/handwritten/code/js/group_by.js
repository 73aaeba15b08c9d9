function groupBy(items, keyFn) {
  return items.reduce((acc, item) => {
    const key = keyFn(item);
    (acc[key] ||= []).push(item);
    return acc;
  }, {});
}

const people = [
  { name: "Li", dept: "sales" },
  { name: "Chen", dept: "dev" },
  { name: "Zhao", dept: "dev" },
];
console.log(groupBy(people, (p) => p.dept));
