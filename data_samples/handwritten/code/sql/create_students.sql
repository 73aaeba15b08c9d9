-- 学生选课数据库：学生、课程和选课三张表
CREATE TABLE students (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    enrolled   DATE NOT NULL
);

CREATE TABLE courses (
    id      INTEGER PRIMARY KEY,
    title   TEXT NOT NULL,
    credits INTEGER CHECK (credits > 0)
);

CREATE TABLE enrollments (
    student_id INTEGER REFERENCES students(id),
    course_id  INTEGER REFERENCES courses(id),
    grade      REAL,
    PRIMARY KEY (student_id, course_id)
);
