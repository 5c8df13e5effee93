"""C{python -m s3balance.ops.fsck}: the same as C{s3balance-admin fsck}."""

from s3balance.ops.fsck.command import main

raise SystemExit(main())
