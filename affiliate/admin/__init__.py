"""Staff pages: the admin dashboard, affiliate approval, programs."""
