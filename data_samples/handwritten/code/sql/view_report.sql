-- A view that joins enrollments with course titles for reporting.
CREATE VIEW course_report AS
SELECT co.title,
       COUNT(en.student_id) AS students,
       ROUND(AVG(en.grade), 1) AS avg_grade
FROM courses co
LEFT JOIN enrollments en ON en.course_id = co.id
GROUP BY co.id, co.title;
