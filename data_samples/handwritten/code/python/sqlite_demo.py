import sqlite3

conn = sqlite3.connect(":memory:")
conn.execute("CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, year INTEGER)")
conn.executemany("INSERT INTO books (title, year) VALUES (?, ?)", [
    ("Dream of the Red Chamber", 1791),
    ("Journey to the West", 1592),
    ("Water Margin", 1589),
])
for title, year in conn.execute("SELECT title, year FROM books WHERE year < 1600 ORDER BY year"):
    print(year, title)
conn.close()
