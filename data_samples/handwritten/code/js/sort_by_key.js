// 按多个字段排序：先按城市升序，再按年龄降序
const people = [
  { name: "Wang", city: "Chengdu", age: 31 },
  { name: "Liu", city: "Beijing", age: 25 },
  { name: "Zhou", city: "Chengdu", age: 40 },
];

people.sort((a, b) => a.city.localeCompare(b.city) || b.age - a.age);
console.log(people.map((p) => `${p.city}:${p.name}`).join(", "));
// Beijing:Liu, Chengdu:Zhou, Chengdu:Wang
