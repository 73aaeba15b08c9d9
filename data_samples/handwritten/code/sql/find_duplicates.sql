-- 找出邮箱重复的用户，并列出每个邮箱出现的次数
SELECT LOWER(email) AS email, COUNT(*) AS n
FROM users
GROUP BY LOWER(email)
HAVING COUNT(*) > 1
ORDER BY n DESC;
