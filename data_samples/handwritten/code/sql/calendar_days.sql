-- 用递归 CTE 生成 2024 年 3 月的每一天，并统计每天的订单数（没有订单的日子记为 0）
WITH RECURSIVE days(d) AS (
    SELECT DATE('2024-03-01')
    UNION ALL
    SELECT DATE(d, '+1 day') FROM days WHERE d < '2024-03-31'
)
SELECT days.d, COUNT(o.id) AS orders
FROM days
LEFT JOIN orders AS o ON DATE(o.created_at) = days.d
GROUP BY days.d
ORDER BY days.d;
