-- Speed up lookups of orders by customer and date with a composite index.
CREATE INDEX IF NOT EXISTS idx_orders_customer_date
    ON orders (customer_id, created_at);

EXPLAIN QUERY PLAN
SELECT id, total
FROM orders
WHERE customer_id = 42 AND created_at >= '2024-06-01';
