"""
s3balance.s3.tagging: the x-amz-tagging header, the <Tagging> document and
S3's limits (pure), and the store's text of a tag set (records.dump_tags).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from s3balance.errors import S3Error
from s3balance.s3 import tagging
from s3balance.store.records import dump_tags, load_tags


def tagging_document(*pairs: tuple[str, str], namespace: bool = True) -> bytes:
    xmlns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' if namespace else ""
    tags = "".join(f"<Tag><Key>{key}</Key><Value>{value}</Value></Tag>" for key, value in pairs)
    return f'<?xml version="1.0" encoding="UTF-8"?><Tagging{xmlns}><TagSet>{tags}</TagSet></Tagging>'.encode()


class ErrorAssertions(SynchronousTestCase):
    def assertS3Error(self, call, code: str, message: str = "", status: int = 400, **extra: str) -> S3Error:
        with self.assertRaises(S3Error) as raised:
            call()
        error = raised.exception
        self.assertEqual((error.code, error.status), (code, status))
        if message:
            self.assertEqual(error.message, message)
        for name, value in extra.items():
            self.assertEqual(error.extra.get(name), value, name)
        return error


class HeaderTests(ErrorAssertions):
    def test_pairs_are_decoded_and_sorted_by_key(self) -> None:
        self.assertEqual(
            tagging.parse_header("b=2&a=1&c%2Fd=e%3Df+g%20h%40"),
            (("a", "1"), ("b", "2"), ("c/d", "e=f g h@")),
        )

    def test_a_key_without_a_value_has_the_empty_value(self) -> None:
        self.assertEqual(tagging.parse_header("foo=bar&bar"), (("bar", ""), ("foo", "bar")))
        self.assertEqual(tagging.parse_header("k="), (("k", ""),))

    def test_empty_pieces_and_an_empty_header_are_no_tags(self) -> None:
        self.assertEqual(tagging.parse_header("a=b&&"), (("a", "b"),))
        self.assertEqual(tagging.parse_header(""), ())
        self.assertEqual(tagging.requested(None), ())

    def test_utf8_in_the_header_is_read_as_its_bytes(self) -> None:
        received = "k=%C3%A9&l=ü".encode().decode("latin-1")  # a header's str: its bytes as latin-1
        self.assertEqual(tagging.parse_header(received), (("k", "é"), ("l", "ü")))

    def test_a_pair_with_two_equal_signs_is_an_invalid_argument(self) -> None:
        self.assertS3Error(
            lambda: tagging.parse_header("TagSet=[{Key=string,Value=string}]"), "InvalidArgument",
            "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters "
            "without tag name duplicates.", ArgumentName="x-amz-tagging",
        )

    def test_duplicate_keys_in_the_header_are_an_invalid_argument(self) -> None:
        self.assertS3Error(lambda: tagging.parse_header("a=1&a=2"), "InvalidArgument")

    def test_bytes_that_are_no_utf8_are_an_invalid_argument(self) -> None:
        self.assertS3Error(lambda: tagging.parse_header("a=%FF"), "InvalidArgument")

    def test_the_headers_tags_are_checked_as_an_objects(self) -> None:
        self.assertS3Error(
            lambda: tagging.parse_header("&".join(f"k{n}=v" for n in range(11))), "BadRequest",
            "Object tags cannot be greater than 10",
        )
        self.assertS3Error(lambda: tagging.parse_header("a=%5B%7B"), "InvalidTag", TagKey="a", TagValue="[{")


class LimitTests(ErrorAssertions):
    def test_ten_tags_on_an_object_and_fifty_on_a_bucket(self) -> None:
        ten = [(f"k{n:02}", "v") for n in range(10)]
        self.assertEqual(tagging.validate(ten, tagging.OBJECT), tuple(ten))
        self.assertS3Error(
            lambda: tagging.validate([*ten, ("k10", "v")], tagging.OBJECT), "BadRequest",
            "Object tags cannot be greater than 10",
        )
        fifty = [(f"k{n:02}", "v") for n in range(50)]
        self.assertEqual(len(tagging.validate(fifty, tagging.BUCKET)), 50)
        self.assertS3Error(
            lambda: tagging.validate([*fifty, ("k50", "v")], tagging.BUCKET), "BadRequest",
            "Bucket tag count cannot be greater than 50",
        )

    def test_keys_have_1_to_128_characters(self) -> None:
        self.assertEqual(tagging.validate([("k" * 128, "")], tagging.OBJECT), (("k" * 128, ""),))
        for key in ("", "k" * 129):
            self.assertS3Error(
                lambda key=key: tagging.validate([(key, "v")], tagging.OBJECT), "InvalidTag",
                "The TagKey you have provided is invalid", TagKey=key,
            )

    def test_values_have_0_to_256_characters(self) -> None:
        self.assertEqual(tagging.validate([("k", "v" * 256)], tagging.OBJECT), (("k", "v" * 256),))
        self.assertS3Error(
            lambda: tagging.validate([("k", "v" * 257)], tagging.BUCKET), "InvalidTag",
            "The TagValue you have provided is invalid", TagKey="k", TagValue="v" * 257,
        )

    def test_lengths_count_utf16_code_units(self) -> None:
        """S3 keeps tags in UTF-16: a letter beyond the BMP counts twice."""
        astral = "\U00010400"  # DESERET CAPITAL LETTER LONG I: a letter (Lu)
        self.assertEqual(len(tagging.validate([(astral * 64, "é" * 256)], tagging.OBJECT)), 1)
        self.assertS3Error(lambda: tagging.validate([(astral * 65, "")], tagging.OBJECT), "InvalidTag")
        self.assertS3Error(lambda: tagging.validate([("k", astral * 129)], tagging.OBJECT), "InvalidTag")

    def test_letters_numbers_spaces_and_the_allowed_symbols(self) -> None:
        allowed = "Aé Ж٣ 7_.:/=+-@\u3000"
        self.assertEqual(tagging.validate([(allowed, allowed)], tagging.OBJECT), ((allowed, allowed),))
        for bad in ("a&b", "a#b", "a\tb", "a😀", "a,b", "a*b", "a%b", "a\x00"):
            self.assertS3Error(lambda bad=bad: tagging.validate([(bad, "v")], tagging.OBJECT), "InvalidTag",
                               "The TagKey you have provided is invalid")
            self.assertS3Error(lambda bad=bad: tagging.validate([("k", bad)], tagging.OBJECT), "InvalidTag",
                               "The TagValue you have provided is invalid")

    def test_duplicate_keys(self) -> None:
        self.assertS3Error(
            lambda: tagging.validate([("a", "1"), ("a", "2")], tagging.BUCKET), "InvalidTag",
            "Cannot provide multiple Tags with the same key", TagKey="a",
        )

    def test_the_aws_prefix_is_reserved(self) -> None:
        self.assertS3Error(
            lambda: tagging.validate([("aws:x", "v")], tagging.OBJECT), "InvalidTag",
            "Your TagKey cannot be prefixed with aws:", TagKey="aws:x",
        )
        self.assertS3Error(
            lambda: tagging.validate([("aws:x", "v")], tagging.BUCKET), "InvalidTag",
            "System tags cannot be added/updated by requester", TagKey="aws:x",
        )
        self.assertEqual(len(tagging.validate([("x:aws:y", "aws:")], tagging.BUCKET)), 1)


class DocumentTests(ErrorAssertions):
    def test_a_document_with_or_without_the_namespace(self) -> None:
        for namespace in (True, False):
            body = tagging_document(("b", "2"), ("a", ""), namespace=namespace)
            self.assertEqual(tagging.parse_document(body, tagging.OBJECT), (("a", ""), ("b", "2")))

    def test_an_empty_tag_set_and_an_empty_value_element(self) -> None:
        self.assertEqual(tagging.parse_document(tagging_document(), tagging.BUCKET), ())
        body = b"<Tagging><TagSet><Tag><Key>k</Key><Value/></Tag></TagSet></Tagging>"
        self.assertEqual(tagging.parse_document(body, tagging.OBJECT), (("k", ""),))

    def test_documents_s3_cannot_read_are_malformed_xml(self) -> None:
        for body in (
            b"",
            b"<Tagging><TagSet>",
            b"<Tagging></Tagging>",
            b"<Tags><TagSet/></Tags>",
            b"<Tagging><TagSet/><TagSet/></Tagging>",
            b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
            b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
            b"<Tagging><TagSet><Tag><Key>k</Key><Key>l</Key><Value>v</Value></Tag></TagSet></Tagging>",
            b"<Tagging><TagSet><Other/></TagSet></Tagging>",
            b'<!DOCTYPE x [<!ENTITY a "b">]><Tagging><TagSet/></Tagging>',
        ):
            self.assertS3Error(lambda body=body: tagging.parse_document(body, tagging.OBJECT), "MalformedXML")

    def test_a_documents_tags_are_checked(self) -> None:
        body = tagging_document(("a", "1"), ("a", "2"))
        self.assertS3Error(lambda: tagging.parse_document(body, tagging.OBJECT), "InvalidTag", TagKey="a")

    def test_render_answers_the_tag_set_in_key_order(self) -> None:
        body = tagging.render((("a", "1"), ("k<&>", "")))
        self.assertEqual(
            body,
            b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>'
            b"<Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>k&lt;&amp;&gt;</Key><Value></Value></Tag>"
            b"</TagSet></Tagging>",
        )
        self.assertEqual(tagging.parse_document(tagging.render((("b", "c"),)), tagging.OBJECT), (("b", "c"),))


class DirectiveTests(ErrorAssertions):
    def test_copy_is_the_default_and_case_does_not_matter(self) -> None:
        self.assertEqual(tagging.copy_directive(None), "COPY")
        self.assertEqual(tagging.copy_directive("replace"), "REPLACE")

    def test_another_directive_is_an_invalid_argument(self) -> None:
        self.assertS3Error(lambda: tagging.copy_directive("MERGE"), "InvalidArgument",
                           ArgumentName="x-amz-tagging-directive")

    def test_check_request_looks_at_tagged_writes_only(self) -> None:
        tagging.check_request("UploadPartCopy", "a=b=c", "MERGE")
        tagging.check_request("PutObject", "a=b", None)
        self.assertS3Error(lambda: tagging.check_request("PutObject", "a=b=c", None), "InvalidArgument")
        self.assertS3Error(lambda: tagging.check_request("CreateMultipartUpload", "aws:a=b", None), "InvalidTag")
        self.assertS3Error(lambda: tagging.check_request("CopyObject", None, "MERGE"), "InvalidArgument")


class StoredTextTests(SynchronousTestCase):
    def test_round_trip_of_every_character_a_tag_may_hold(self) -> None:
        tags = (("a b+c", "d=e&f%g"), ("k", "/:@.-_"), ("é\U00010400", ""))
        text = dump_tags(tags)
        self.assertEqual(text, "a%20b%2Bc=d%3De%26f%25g&k=%2F%3A%40.-_&%C3%A9%F0%90%90%80=")
        self.assertEqual(load_tags(text), tags)

    def test_no_tags_are_null(self) -> None:
        self.assertIsNone(dump_tags(()))
        self.assertEqual(load_tags(None), ())
        self.assertEqual(load_tags(""), ())

    def test_stored_in_key_order(self) -> None:
        self.assertEqual(dump_tags((("b", "1"), ("a", "2"))), "a=2&b=1")
