"""Administration: the admin API (``/api/admin``), its token, and the ``arenahub admin`` commands."""
