-- List every employee next to the name of their manager (self join).
SELECT e.name AS employee,
       m.name AS manager
FROM employees AS e
LEFT JOIN employees AS m ON m.id = e.manager_id
ORDER BY manager, employee;
