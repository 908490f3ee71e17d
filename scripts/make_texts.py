#!/usr/bin/env python3
"""Writes the test-text files fixtures/texts/{core,long,minilm,unseen}.jsonl (one JSON object per line: "id", "text").

    .venv-ref/bin/python scripts/make_texts.py

The texts are literal in the .jsonl files (those files are what the suites and the Rust side read); this
script only documents how they were made and rebuilds them byte-identically. The long texts are built
deterministically by cycling fixed sentences. It checks the token counts with the tiny models'
tokenizers (fixtures/models must exist: scripts/make_tiny_models.py).

What the core texts exercise (differences between the libraries and the Rust port):
  * leading / trailing / repeated whitespace (spaces, tabs, newlines, CRLF, NBSP, ideographic space, and
    ASCII information separators U+001C..U+001F, which Python's str.strip() removes but Rust's
    str::trim() does not), a whitespace-only text and whitespace plus one word: sentence-transformers
    5.1 strips the text, FlagEmbedding and plain transformers do not; the XLM-R tokenizer makes "▁"
    tokens from the whitespace;
  * upper case and accents (É, ñ, ü, ß/ẞ, Turkish İ, Greek final sigma): lowercase + strip-accents
    normalizers, and sentence-transformers' Python-side .lower() (do_lower_case) in front of a cased
    tokenizer;
  * CJK, Cyrillic, Arabic, Greek, emoji with ZWJ sequences and flags, scripts missing from the tiny
    vocabularies ([UNK]/<unk>), combining characters, full-width forms (NFKC), zero-width characters;
  * code, numbers, URLs, punctuation, literal special-token strings ("[SEP]", "</s>", "<mask>");
  * one-character texts; texts longer than 64 / 128 / 256 tokens (truncation) and one longer than 2100
    tokens for the XLM-R model.

unseen.jsonl: texts written afresh for tiny-xlmr-spm (the SentencePiece/Precompiled-normalizer tokenizer), none
reused from the other files: Vietnamese (precomposed and NFD), Thai, Hindi (nukta letters, which NFKC
decomposes), Hebrew (niqqud out of canonical order), Korean (conjoining jamo, half-width jamo), Japanese with
half-width katakana (voiced marks: the Precompiled normalizer gives ヒ + U+3099 where SentencePiece and NFKC
give ビ) and full-width ASCII, ligatures, super/subscripts, fractions, circled and Roman numerals, Arabic
presentation forms (U+FDFD expands to 18 characters), combining vs precomposed letters, NBSP / em / thin /
ideographic spaces, zero-width space / joiner / word joiner / BOM, tabs and CRLF, leading and trailing
Unicode spaces, a text that is only such spaces, emoji with skin tones, mathematical alphanumerics, a URL,
JSON, SQL, "<mask>" glued to words (lstrip), and two texts longer than 512 tokens (truncation at the model's
512).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ROOT / "fixtures" / "texts"

EN_SENTENCES = [
    "The committee met on Tuesday to review the annual budget and the plans for the new library.",
    "After a long discussion, the members agreed to postpone the decision until more data was available.",
    "Meanwhile, the engineers continued testing the prototype under different weather conditions.",
    "Each test produced hundreds of measurements, which were stored in a shared database for later analysis.",
    "Some of the results were surprising: the device worked better in the cold than in the heat.",
    "The team wrote a short report that summarised the findings and listed the open questions.",
    "Readers who want more detail can find the raw numbers in the appendix, together with the code.",
    "In the next phase, the project will focus on reliability, documentation, and user feedback.",
    "Volunteers from three cities have already signed up to try the device at home for a month.",
    "Their comments will be collected every week and discussed at the following meeting.",
    "If everything goes well, a first public version could be ready before the end of the year.",
    "Nobody expects it to be perfect, but everyone agrees that it is a promising start.",
]

MULTI_SENTENCES = [
    "The river flows through the valley, past old villages, farms, and forests.",
    "Le café est très chaud ; fais attention à ne pas te brûler.",
    "El niño comió una manzana y después jugó en el jardín con su hermano.",
    "Die Straße ist nass, weil es die ganze Nacht geregnet hat.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και έχει μεγάλη ιστορία.",
    "القاهرة هي عاصمة مصر وأكبر مدنها.",
    "我们今天去公园散步，天气很好。",
    "東京は日本の首都です。",
    "서울은 한국의 수도입니다.",
    "for (int i = 0; i < n; i++) { sum += a[i]; }",
    "Numbers such as 42, 3.14159 and 2024-06-01 appear in many documents.",
]


def cycle_text(sentences: list[str], n_sentences: int, numbered: bool = False) -> str:
    out = []
    for i in range(n_sentences):
        s = sentences[i % len(sentences)]
        out.append(f"({i + 1}) {s}" if numbered else s)
    return " ".join(out)


def core_texts() -> list[tuple[str, str]]:
    return [
        ("en-simple", "The quick brown fox jumps over the lazy dog."),
        ("ws-leading", "   leading spaces before the text"),
        ("ws-trailing", "trailing spaces after the text   "),
        ("ws-both-tabs-newlines", "\t\n  Both ends have tabs and newlines \n\t "),
        ("ws-repeated-inside", "repeated    spaces\t\tand\n\nnewlines   inside"),
        ("ws-only-plus-word", " \n\t  word  \t\n "),
        ("ws-only", "   \t\n  "),
        ("ws-unicode-spaces", "\u00a0\u3000non-breaking and ideographic spaces\u2003\u00a0"),
        ("ws-info-separators", "\u001funit and record separators\u001e"),
        ("ws-crlf", "line one\r\nline two\rline three\nline four"),
        ("case-accents-fr", "CAFÉ Élève À LA PLAGE, Où êtes-vous ? Noël à l'église."),
        ("case-es", "¡El NIÑO Añadió Más Piñas! ¿Dónde está Málaga?"),
        ("case-de", "Die GRÖSSE der Straße: übermäßig GROẞ, Müller und Schäfer."),
        ("turkish-dotted-i", "İSTANBUL ve İzmir; ıslak ılık DİYARBAKIR"),
        ("greek-final-sigma", "ΟΔΟΣ ΣΟΦΙΑΣ και Ο ΚΟΣΜΟΣ"),
        ("cjk-zh", "我们今天去公园散步，天气很好。机器学习需要数据和计算。"),
        ("cjk-ja", "東京は日本の首都です。カタカナとひらがな。"),
        ("cjk-ko", "서울은 한국의 수도입니다. 저는 매일 아침 커피를 마십니다."),
        ("cyrillic", "Москва — столица России. Київ — столиця України."),
        ("arabic", "القاهرة هي عاصمة مصر، والطقس جميل اليوم."),
        ("greek", "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας."),
        ("emoji", "I love it 😀👍🏽 so much 🎉🎉"),
        ("emoji-zwj-flags", "Family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵🇺🇸 and 🏳️‍🌈 rainbow"),
        ("mixed-scripts", "Hello мир κόσμε عالم 世界 עולם สวัสดี नमस्ते"),
        ("code-python", 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n'),
        ("code-rust", 'fn main() {\n\tlet v: Vec<u32> = (0..10).map(|x| x * x).collect();\n\tprintln!("{:?}", v);\n}'),
        ("numbers", "3.14159 2,718 1e-10 0x1F 2024-06-01 12:30:45 +44 (0)20 7946 0958 100% $19.99 €5,00"),
        ("url-email", "Visit https://example.org/a/b?c=1&d=2#frag or mail x.y+z@example.com today"),
        ("special-token-strings", "Literal [CLS] and [SEP] and <s> </s> <mask> <pad> [MASK] strings"),
        ("combining-chars", "e\u0301 vs é, n\u0303 vs ñ, A\u030a vs Å"),
        ("fullwidth", "ＡＢＣ　１２３　ｆｕｌｌｗｉｄｔｈ！"),
        ("zero-width", "zero\u200bwidth\u200cnon\u200djoiner and soft\u00adhyphen"),
        ("quotes-dashes", "“Smart quotes” ‘single’ «guillemets» „German“ — en–dash … ellipsis"),
        ("mixed-case-code", "HTTPServer.getURL() returns an XMLHttpRequest in camelCase and snake_case"),
        ("char-letter", "a"),
        ("char-digit", "7"),
        ("char-punct", "?"),
        ("char-cjk", "猫"),
        ("long-en-80-words", cycle_text(EN_SENTENCES, 5)),
        ("long-en-400-words", cycle_text(EN_SENTENCES, 24, numbered=True)),
        ("long-multilingual", cycle_text(MULTI_SENTENCES, 30)),
        ("long-xlmr-2200-tokens", cycle_text(MULTI_SENTENCES + EN_SENTENCES, 54, numbered=True)),
    ]


VI_SENTENCES = [
    "Sáng thứ bảy, chợ hoa ven sông đông nghịt người mua đào và quất về chưng Tết.",
    "Bà ngoại kể rằng hồi xưa cả làng phải gánh nước từ giếng đầu đình về nấu cơm.",
    "Chiếc xe buýt số mười bốn chạy chậm vì đường Nguyễn Trãi đang được sửa chữa.",
    "Các nhà khoa học đã đo độ mặn của nước biển ở ba mươi hai điểm khác nhau.",
    "Quyển từ điển cũ rách bìa nhưng vẫn được dùng hằng ngày trong thư viện trường.",
    "Nếu trời không mưa, chiều mai chúng ta sẽ đạp xe quanh hồ Tây ngắm hoàng hôn.",
]

MIXED_SENTENCES = [
    "ﾎﾃﾙのﾛﾋﾞｰで\u00a0ｺｰﾋｰを２杯、ﾊﾟﾝｹｰｷを１枚。",
    "Ｗｉ－Ｆｉ　ｐａｓｓｗｏｒｄ：ａｂｃ１２３",
    "Nhiệt độ hôm nay là 31\u2009°C, độ ẩm 78\u202f%.",
    "ร้านกาแฟเล็ก ๆ ริมคลองเปิดตั้งแต่หกโมงเช้า",
    "पुस्तकालय में नई किताबें आई हैं, कृपया उन्हें ध्यान से रखें।",
    "אתמול בערב ירד גשם חזק והרחובות הוצפו.",
    "도서관 앞 벤치에 앉아 샌드위치를 먹었다.",
    "The \ufb01rst o\ufb03cer \ufb02ew 10\u00b3 km in \u00bd a day\u200b\u2014a record.",
    "𝐁𝐨𝐥𝐝 and 𝑖𝑡𝑎𝑙𝑖𝑐 letters, ①②③ and Ⅻ.",
]


def unseen_texts() -> list[tuple[str, str]]:
    import unicodedata

    vi = "Tiếng Việt có sáu thanh điệu: ngang, huyền, sắc, hỏi, ngã và nặng."
    assert unicodedata.normalize("NFC", vi) == vi != unicodedata.normalize("NFD", vi)
    return [
        ("vi-precomposed", vi),
        ("vi-decomposed-nfd", unicodedata.normalize("NFD", vi)),
        ("th-market", "ตลาดน้ำเปิดตั้งแต่เช้ามืด แม่ค้าพายเรือขายผลไม้และขนมไทย"),
        ("hi-nukta", "ज़िंदगी में फ़ुरसत कम है; हम कल सुबह ट्रेन से जयपुर जाएँगे। \u095b vs \u091c\u093c"),
        ("he-niqqud-order", "בבוקר שתינו קפה ליד הים. \u05e9\u05c1\u05b8\u05dc\u05d5\u05b9\u05dd vs \u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd"),
        ("ko-jamo", "지난 토요일에 한강에서 자전거를 탔어요. \u1112\u1161\u11ab\u1100\u1173\u11af / 한글 / \uffbe\uffc2\uffa4"),
        ("ja-halfwidth-katakana", "ｺｰﾋｰとﾗｰﾒﾝ､ﾃﾞｻﾞｰﾄはｱｲｽｸﾘｰﾑとﾁｮｺﾚｰﾄﾊﾟﾌｪ｡「ﾃﾚﾋﾞ」"),
        ("ja-fullwidth-ascii", "ＵＲＬは　ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｊｐ／　です（２０２５年４月）！"),
        ("ligatures", "The \ufb01nal \ufb02ight was \ufb00ine: o\ufb03ce sta\ufb00 \ufb01xed the \ufb02aw; \ufb06 and \ufb05 are rare."),
        ("super-sub-fractions", "E = mc², H₂O, x³ + y⁴, 10⁻⁶ m, ½ + ¼ = ¾, 20 ℃, № 7, ㎞ and ™"),
        ("circled-roman", "Chapter Ⅻ, steps ① ② ③, items ⑴ ⑵ and ⒜ ⒝, ㈱ company"),
        ("arabic-presentation", "\ufefb إله، \ufdfa، \ufdfd and \ufefc"),
        ("combining-vs-precomposed", "Zoë / Zoe\u0308, Ångström / A\u030angstro\u0308m, \u212b (U+212B), \u01c5, \ufb03"),
        ("unicode-spaces-inside", "one\u00a0two\u2003three\u3000four\u2009five\u202fsix\u2002seven\u205feight"),
        ("zero-width-inside", "in\u200bvisible space, emoji\u200djoiner, word\u2060joiner and \ufeffBOM inside"),
        ("tabs-crlf", "\tname\tscore\r\n\tLan\t9.5\r\n\tMinh\t8.0\r\n\r\n"),
        ("ws-unicode-leading-trailing", "\u00a0\u3000  padded with Unicode spaces \u2003\u2002"),
        ("ws-unicode-only", "\u00a0\u2003\u3000\u200b"),
        ("emoji-skin-tones", "Thumbs 👍🏻👍🏿, wave 👋🏽, 🧑🏾\u200d💻 coding, ❤\ufe0f and ✈\ufe0f travel"),
        ("math-alphanumerics", "𝐀𝐁𝐂 𝑥𝑦𝑧 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝕊𝕖𝕥 𝟙𝟚𝟛 𝖘𝖆𝖓𝖘"),
        ("url-percent", "Docs: https://docs.example.net/v2/search?q=caf%C3%A9&page=3#results (mirror http://10.0.0.7:8080/)"),
        ("json", '{"user": {"id": 4812, "name": "Lê Thị Hoa", "tags": ["admin", "β-tester"], "active": false}}'),
        ("sql", "SELECT c.name, COUNT(o.id) AS orders\nFROM customers c LEFT JOIN orders o ON o.customer_id = c.id\n"
                "WHERE c.country IN ('VN', 'TH')\nGROUP BY c.name HAVING COUNT(o.id) > 3;"),
        ("rtl-ltr-mix", "The word שלום means peace; in Hindi शांति, in Thai สันติภาพ, in Korean 평화."),
        ("mask-glued", "Hà Nội is the<mask>of Việt Nam,   <mask> too.</s>"),
        ("cyrillic-stress-marks", "за\u0301мок vs замо\u0301к, му\u0301ка vs мука\u0301"),
        ("cjk-fullwidth-punct", "「東京タワー」と『서울타워』！？〜 ＃１位"),
        ("digits-other-scripts", "२०२५ ๒๕๖๘ ٢٠٢٥ 2025 ５"),
        ("long-vi-over-512-tokens", cycle_text(VI_SENTENCES, 12, numbered=True)),
        ("long-mixed-over-512-tokens", cycle_text(MIXED_SENTENCES, 20)),
    ]


def long_texts() -> list[tuple[str, str]]:
    # Kept to one long text: its ColBERT rows dominate the reference file (about 128 bytes per token).
    return [
        ("short-en", "The quick brown fox jumps over the lazy dog."),
        ("ws-leading-trailing", "  leading and trailing whitespace \n"),
        ("cjk-zh", "我们今天去公园散步，天气很好。"),
        ("emoji-zwj-flags", "Family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵 ok"),
        ("long-xlmr-2500-tokens", cycle_text(EN_SENTENCES + MULTI_SENTENCES, 61, numbered=True)),
    ]


def minilm_texts() -> list[tuple[str, str]]:
    return [
        ("minilm-en-300-words", cycle_text(EN_SENTENCES, 18)),
        ("minilm-en-600-words", cycle_text(EN_SENTENCES[::-1], 36, numbered=True)),
        ("minilm-en-padded-ws", "   " + cycle_text(EN_SENTENCES[3:], 16) + "\n\n  "),
    ]


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    ids = [i for i, _ in rows]
    assert len(set(ids)) == len(ids), "duplicate ids"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for i, t in rows:
            line = json.dumps({"id": i, "text": t}, ensure_ascii=False)
            # Same escaping as generate_fixtures.py: no raw U+0085 / U+2028 / U+2029 (str.splitlines breaks).
            for c in ("\u0085", "\u2028", "\u2029"):
                line = line.replace(c, "\\u%04x" % ord(c))
            f.write(line + "\n")
    # Round trip: what is read back is byte-identical text.
    back = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["text"]) for r in back] == rows
    print(f"wrote {path.relative_to(ROOT)}: {len(rows)} texts")


def token_report(rows: list[tuple[str, str]], model_dir: Path) -> dict[str, int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return {i: len(tok(t)["input_ids"]) for i, t in rows}


def main() -> int:
    core, long, minilm, unseen = core_texts(), long_texts(), minilm_texts(), unseen_texts()
    write(TEXTS / "core.jsonl", core)
    write(TEXTS / "long.jsonl", long)
    write(TEXTS / "minilm.jsonl", minilm)
    write(TEXTS / "unseen.jsonl", unseen)
    # The unseen texts are new: none of them (nor the sentences of their long texts) is in another file.
    others = {t for _, t in core + long + minilm}
    assert not any(t in others for _, t in unseen)
    assert not any(x in t for x in VI_SENTENCES + MIXED_SENTENCES for t in others)

    models = ROOT / "fixtures" / "models"
    if (models / "tiny-xlmr-m3").is_dir():
        import transformers

        transformers.logging.set_verbosity_error()
        x_core = token_report(core, models / "tiny-xlmr-m3")
        x_long = token_report(long, models / "tiny-xlmr-m3")
        b_core = token_report(core, models / "tiny-bert-mean")
        print("tokens (tiny-xlmr-m3 / tiny-bert-mean, untruncated):")
        for i, _ in core:
            print(f"  {i:28s} {x_core[i]:6d} {b_core[i]:6d}")
        for i, _ in long:
            print(f"  long.jsonl {i:28s} {x_long[i]:6d}")
        assert 2100 < x_core["long-xlmr-2200-tokens"] <= 2560, x_core["long-xlmr-2200-tokens"]
        assert 2400 < x_long["long-xlmr-2500-tokens"] <= 2560, x_long["long-xlmr-2500-tokens"]
        assert b_core["long-en-80-words"] > 64 and b_core["long-en-400-words"] > 256
    if (models / "tiny-xlmr-spm").is_dir():
        s_unseen = token_report(unseen, models / "tiny-xlmr-spm")
        print("tokens (tiny-xlmr-spm, untruncated):")
        for i, _ in unseen:
            print(f"  unseen.jsonl {i:28s} {s_unseen[i]:6d}")
        assert 512 < s_unseen["long-vi-over-512-tokens"] < 1500, s_unseen["long-vi-over-512-tokens"]
        assert 512 < s_unseen["long-mixed-over-512-tokens"] < 1500, s_unseen["long-mixed-over-512-tokens"]
    return 0


if __name__ == "__main__":
    sys.exit(main())
