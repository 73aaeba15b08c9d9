-- 按月统计订单数量和销售额（SQLite 语法）
SELECT strftime('%Y-%m', created_at) AS month,
       COUNT(*)                      AS orders,
       ROUND(SUM(total), 2)          AS revenue
FROM orders
WHERE created_at >= '2024-01-01'
GROUP BY month
ORDER BY month;
