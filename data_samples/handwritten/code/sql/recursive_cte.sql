-- Walk an employee hierarchy with a recursive common table expression.
WITH RECURSIVE chain(id, name, manager_id, depth) AS (
    SELECT id, name, manager_id, 0
    FROM employees
    WHERE manager_id IS NULL
    UNION ALL
    SELECT e.id, e.name, e.manager_id, c.depth + 1
    FROM employees e
    JOIN chain c ON e.manager_id = c.id
)
SELECT depth, name FROM chain ORDER BY depth, name;
