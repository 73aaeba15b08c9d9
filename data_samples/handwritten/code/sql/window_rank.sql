-- Rank products by revenue within each category and keep the top three.
SELECT category, product, revenue
FROM (
    SELECT category,
           product,
           SUM(amount) AS revenue,
           RANK() OVER (PARTITION BY category ORDER BY SUM(amount) DESC) AS rnk
    FROM sales
    GROUP BY category, product
) ranked
WHERE rnk <= 3
ORDER BY category, rnk;
