-- Insert a page view counter or increment it when the row already exists (PostgreSQL).
INSERT INTO page_views (path, views)
VALUES ('/index.html', 1)
ON CONFLICT (path)
DO UPDATE SET views = page_views.views + EXCLUDED.views;
