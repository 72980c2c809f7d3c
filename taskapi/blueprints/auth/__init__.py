"""Registration, login, token refresh and the caller's profile, under /auth."""
