-- 计算每个地区销售额占总销售额的百分比
SELECT region,
       SUM(amount) AS region_sales,
       ROUND(100.0 * SUM(amount) / SUM(SUM(amount)) OVER (), 1) AS pct_of_total
FROM sales
GROUP BY region
ORDER BY region_sales DESC;
