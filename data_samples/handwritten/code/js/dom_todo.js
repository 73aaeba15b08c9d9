// 一个极简的待办清单：输入框回车后添加条目，点击条目切换完成状态
const input = document.querySelector("#todo-input");
const list = document.querySelector("#todo-list");

input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !input.value.trim()) return;
  const li = document.createElement("li");
  li.textContent = input.value.trim();
  li.addEventListener("click", () => li.classList.toggle("done"));
  list.appendChild(li);
  input.value = "";
});
