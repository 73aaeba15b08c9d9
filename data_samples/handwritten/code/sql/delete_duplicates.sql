-- 删除重复记录，每组重复数据只保留 id 最小的一行
DELETE FROM contacts
WHERE id NOT IN (
    SELECT MIN(id)
    FROM contacts
    GROUP BY phone
);
