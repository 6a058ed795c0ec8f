-- Dashboard sessions slide: each page view moves last_seen_at, and a session idle for
-- longer than CP_DASHBOARD_IDLE_SECS is over although its token has not expired.
ALTER TABLE owner_sessions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
