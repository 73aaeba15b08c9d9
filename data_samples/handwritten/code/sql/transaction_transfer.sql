-- 转账必须放在事务中：两条更新要么都成功，要么都回滚
BEGIN TRANSACTION;
UPDATE accounts SET balance = balance - 200 WHERE id = 1 AND balance >= 200;
UPDATE accounts SET balance = balance + 200 WHERE id = 2;
COMMIT;
