"""ACLs and bucket policies (s3/acl.py, s3/policy.py):

  - a nullable acl column, the access control list's grants as
    s3.acl.dump writes them (JSON; NULL: the owner's full control only,
    the "private" canned ACL), on objects (the version's), multipart_uploads
    (CreateMultipartUpload's x-amz-acl or x-amz-grant-*, the object's at
    Complete) and buckets (CreateBucket's, PutBucketAcl's);
  - a nullable public_access_block column on buckets, the bucket's
    PutPublicAccessBlock configuration (JSON; NULL: none);
  - a table bucket_policies, one row per bucket with a policy (the policy
    document as PutBucketPolicy received it, validated), gone with its
    bucket (ON DELETE CASCADE).

Nullable columns without a default and a new table: no table is
rewritten, so daemons of the previous release keep running during the
upgrade; their writes leave acl NULL (private), which is all they accept.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# As tables.TAGS: TEXT, MEDIUMTEXT on MySQL/MariaDB (a policy may be 20 KiB,
# an ACL 100 grants).
Document = sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")

TABLES = ("objects", "multipart_uploads", "buckets")


def upgrade():
    for table in TABLES:
        op.add_column(table, sa.Column("acl", Document, nullable=True))
    op.add_column("buckets", sa.Column("public_access_block", sa.String(255), nullable=True))
    op.create_table(
        "bucket_policies",
        sa.Column("bucket", sa.String(63), sa.ForeignKey("buckets.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("policy", Document, nullable=False),
    )


def downgrade():
    op.drop_table("bucket_policies")
    # In place on SQLite too (3.35+), as 0013.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("ALTER TABLE buckets DROP COLUMN public_access_block")
    else:
        op.drop_column("buckets", "public_access_block")
    for table in reversed(TABLES):
        if sqlite:
            op.execute(f"ALTER TABLE {table} DROP COLUMN acl")
        else:
            op.drop_column(table, "acl")
