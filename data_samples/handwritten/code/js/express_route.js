// Express 路由：按 id 查询城市，找不到时返回 404
const express = require("express");

const app = express();
const cities = new Map([
  [1, { id: 1, name: "Hangzhou" }],
  [2, { id: 2, name: "Chengdu" }],
]);

app.get("/cities/:id", (req, res) => {
  const city = cities.get(Number(req.params.id));
  if (!city) {
    return res.status(404).json({ error: "city not found" });
  }
  res.json(city);
});

app.listen(3000, () => console.log("listening on 3000"));
