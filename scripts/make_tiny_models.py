#!/usr/bin/env python3
"""Makes the tiny random-weight test models under fixtures/models/.

    .venv-ref/bin/python scripts/make_tiny_models.py [--out fixtures/models]

Everything is seeded; running it twice gives byte-identical files (checked with sha256 at the end when
--check-determinism is given). The models are NOT trained: the weights are random (initializer_range 0.2,
random biases and LayerNorm parameters, so that a Rust port that drops a bias or swaps LayerNorm
weight/bias is caught; token-type rows shrunk to std 0.05 so that CLS, mean and max pooling give clearly
different vectors). Only the tokenizers are "trained": their vocabularies are chosen deterministically
(BPE-style WordPiece merges; Unigram pieces by substring frequency) from the small multilingual corpus
below, and the tokenizers are built and serialized with the `tokenizers` library (the library's own
trainers are not deterministic from run to run, see the comment above BERT_SPECIALS). Some scripts (emoji, Hebrew, Thai,
Devanagari, most CJK) are deliberately missing from the corpus so that test texts hit [UNK]/<unk>.

Models:
  tiny-bert-mean     BERT, uncased WordPiece, ST mean pooling + Normalize; tokenizer.json carries baked-in
                     truncation (16) and Fixed(24) padding blocks that Python ignores and Rust must override.
                     ST prompts {"query": "query: ", "passage": "passage: "} (no default prompt) and
                     include_prompt false: with a prompt, its tokens are left out of the mean.
  tiny-bert-cls      BERT, cased WordPiece, ST CLS pooling (partial pooling config), no Normalize,
                     sentence_bert_config do_lower_case=true, max_seq_length 48, 128 positions.
  tiny-bert-cased-config-override
                     tiny-bert-cls byte for byte (weights, cased tokenizer.json, ...) except two files:
                     tokenizer_config.json without do_lower_case (transformers' BertTokenizerFast defaults it
                     to True) and with tokenize_chinese_chars false, and sentence_bert_config do_lower_case=false.
                     BertTokenizerFast.__init__ rewrites the tokenizer.json BertNormalizer from those kwargs, so
                     every Python library lowercases and keeps CJK ideographs inside words; raw tokenizer.json
                     does neither.
  tiny-bert-dense    BERT, uncased WordPiece (tiny-bert-mean's vocabulary, no baked-in blocks), ST pooling
                     cls + max + mean_sqrt_len (3 x 32 = 96 wide) -> Dense(96 -> 24, tanh; 2_Dense/ written by
                     sentence_transformers.models.Dense.save) -> Normalize: output dim 24.
  tiny-xlmr-m3       XLM-RoBERTa in BAAI/bge-m3's layout (Unigram/Metaspace tokenizer, 2562 positions,
                     sparse_linear.pt, colbert_linear.pt, ST CLS + Normalize), weights in model.safetensors.
  tiny-xlmr-m3-pth   the same model, weights in pytorch_model.bin (zip torch.save) instead.
  tiny-xlmr-spm      XLM-RoBERTa in bge-m3's layout whose tokenizer is made the way the real XLM-R's was: a
                     SentencePiece unigram model trained by sentencepiece.SentencePieceTrainer (nmt_nfkc rules,
                     one thread, fixed seed: deterministic) on CORPUS + SPM_EXTRA_CORPUS, loaded by
                     XLMRobertaTokenizer(vocab_file=...) and converted by transformers' convert_slow_tokenizer:
                     tokenizer.json gets a Precompiled (charsmap) normalizer and a Metaspace pre-tokenizer;
                     sentencepiece.bpe.model is then dropped (only the fast tokenizer is used). 514 positions
                     (model_max_length 512), ST CLS + Normalize with max_seq_length 512, M3 heads.
  tiny-mpnet         MPNet (MPNetModel) in all-mpnet-base-v2's layout: uncased WordPiece with <s> <pad> </s> <unk>
                     first, [UNK] as unk_token and <mask> (lstrip) last, saved by MPNetTokenizerFast; 514 positions
                     (pad 1: 512 tokens), relative position bias (32 buckets) scaled to std 1 so that a wrong bucket
                     shows; ST mean pooling + Normalize, max_seq_length 512 (texts past 128 tokens reach the last
                     bucket).
  tiny-distilbert    DistilBERT (DistilBertModel), learned positions, uncased WordPiece (tiny-bert-mean's vocabulary)
                     saved by DistilBertTokenizerFast; ST mean pooling + Normalize, max_seq_length 128.
  tiny-distilbert-sinusoidal
                     DistilBERT with sinusoidal_pos_embds true, its position table left out of model.safetensors
                     (transformers computes a missing one, as it initializes it); ST CLS pooling, no Normalize.
  tiny-deberta-v2    DeBERTa-v2 (DebertaV2Model), a model type embcheck does not implement: its suites check systems
                     model-free. tiny-bert-mean's tokenizer files (tokenizer_class BertTokenizer), ST CLS + Normalize.
  tiny-modernbert    ModernBERT (ModernBertModel): 4 layers, global attention every 3rd, a 16-token sliding window
                     otherwise, RoPE thetas 160000 / 10000, GeGLU, no biases; byte-level BPE with deterministic merges,
                     [CLS] $A [SEP]; ST mean pooling + Normalize.
  tiny-modernbert-cls
                     ModernBERT with biases, global every 2nd layer, a 10-token window, thetas 80000 / 5000; ST CLS +
                     Normalize.
  tiny-embeddinggemma
                     Gemma 3 text (Gemma3TextModel) as EmbeddingGemma runs it (use_bidirectional_attention), built by
                     transformers 5 only (`.venv-ref5/bin/python scripts/make_tiny_models.py --only tiny-embeddinggemma`;
                     4.56 has no bidirectional mode): 4 query heads over 2 key heads of 16, query_pre_attn_scalar 24,
                     sliding window 8 in layers 0, 1, 3; byte-level BPE with <bos> prepended; ST mean pooling, Dense
                     32 -> 64 -> 24 (no bias, Identity), Normalize, EmbeddingGemma's prompts.
"""
from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import hashlib
import json
import math
import shutil
import sys
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import torch

import sentence_transformers
import tokenizers
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    DebertaV2Config,
    DebertaV2Model,
    DistilBertConfig,
    DistilBertModel,
    DistilBertTokenizerFast,
    MPNetConfig,
    MPNetModel,
    ModernBertConfig,
    ModernBertModel,
    MPNetTokenizerFast,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaModel,
    XLMRobertaTokenizerFast,
)

HIDDEN = 32
LAYERS = 2
HEADS = 4
INTERMEDIATE = 64
INIT_RANGE = 0.2

# ---------------------------------------------------------------------------------------------------------
# Training corpus for the tokenizers. Covered: English, French, Spanish, German, Portuguese, Polish, Czech,
# Turkish (without the dotted capital I), Russian, Ukrainian, Greek, Arabic, a few Chinese/Japanese/Korean
# sentences, code, digits, punctuation. Not covered on purpose: emoji, Hebrew, Thai, Devanagari, most
# CJK ideographs, the Turkish dotted capital I, exotic symbols.
# ---------------------------------------------------------------------------------------------------------
CORPUS = """\
The quick brown fox jumps over the lazy dog.
A small model is trained on a small corpus, and its vocabulary is small too.
Embeddings map text to vectors; similar texts get similar vectors.
Search engines rank documents by the similarity between a query and each passage.
The weather today is sunny with a light breeze from the west.
Please send the report by Friday, 5 p.m., to the whole team.
She read three books last month and wrote a short review of each one.
Numbers such as 42, 3.14159, 1,000,000 and 2024-06-01 appear in many documents.
The price rose by 12.5% to $19.99 (excluding tax), said the store on Monday.
Is this the right way? Yes! No... maybe; who knows: "quotes" and 'apostrophes' (parentheses) [brackets] {braces}.
Email me at test@example.com or visit https://example.org/path?query=1&lang=en#section.
The meeting was moved from room 101 to room 202 because of a scheduling conflict.
Rust and Python are both popular programming languages with large communities.
Machine learning models need data, compute, and careful evaluation.
Transformers use attention to mix information between the tokens of a sequence.
Le café est très chaud ; fais attention à ne pas te brûler.
Où est la bibliothèque ? Elle se trouve près de l'église, à côté du marché.
Les élèves ont répondu à toutes les questions avec beaucoup de précision.
Noël approche et les enfants préparent des cadeaux pour leurs parents.
El niño comió una manzana y después jugó en el jardín con su hermano.
¿Dónde está la estación de tren? ¡Necesito llegar a Málaga mañana!
La información útil está en la página número ocho del capítulo tres.
España y Portugal comparten la península ibérica y una larga historia.
Der schnelle braune Fuchs springt über den faulen Hund.
Die Straße ist nass, weil es die ganze Nacht geregnet hat.
Größere Übungen erfordern mehr Geduld und viel Zeit für die Prüfung.
Müller und Schäfer fahren mit dem Fahrrad zur Universität in München.
O pão e o café da manhã estão na mesa da cozinha, não se esqueça.
A educação é fundamental para o desenvolvimento de uma nação.
Zażółć gęślą jaźń: polskie znaki są trudne dla wielu systemów.
Příliš žluťoučký kůň úpěl ďábelské ódy na louce u řeky.
Bugün hava çok güzel, akşam arkadaşlarımla dışarı çıkacağım.
Öğrenciler sınavdan önce kütüphanede çalıştılar ve iyi sonuç aldılar.
Москва является столицей России и крупнейшим городом страны.
Быстрая коричневая лиса прыгает через ленивую собаку.
Я люблю читать книги вечером, когда в доме тихо и спокойно.
Сегодня хорошая погода, и мы пойдём гулять в парк.
Київ є столицею України, а Дніпро перетинає місто.
Співає соловейко, і цвіте калина біля хати.
Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.
Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και έχει μεγάλη ιστορία.
Οι μαθητές διαβάζουν για τις εξετάσεις στη βιβλιοθήκη.
القاهرة هي عاصمة مصر وأكبر مدنها.
الطقس جميل اليوم، وسنذهب إلى الحديقة بعد الظهر.
أحب القراءة في المساء عندما يكون البيت هادئا.
我们今天去公园散步，天气很好。
北京是中国的首都，也是一个历史悠久的城市。
机器学习需要数据和计算。
東京は日本の首都です。今日はいい天気ですね。
私は毎朝コーヒーを飲みます。
서울은 한국의 수도입니다. 오늘 날씨가 좋네요.
저는 매일 아침 커피를 마십니다.
def add(a, b):
    return a + b
for (int i = 0; i < n; i++) { sum += a[i]; }
fn main() { let v: Vec<u32> = (0..10).collect(); println!("{:?}", v); }
SELECT id, name FROM users WHERE age >= 18 ORDER BY name;
const x = {"key": [1, 2, 3], "ok": true, "none": null};
if x != None and len(x) > 0: print(x[0], x[-1])
import numpy as np; y = np.zeros((3, 4), dtype=np.float32)
git commit -m "fix: handle empty input" && cargo test --release
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 256 512 1024 2048 4096 65535
3.14 2.718 1.414 0.5 -1 +7 1e-5 6.02e23 99% 50/50 24/7 12:30 08:15
!! ?? ... --- ___ *** ### @@ $$ %% ^^ && (( )) [[ ]] {{ }} << >> == != <= >= += -= // \\\\ || ~~
Libraries are quiet places where people study, read newspapers, and borrow books for free.
The museum opens at nine in the morning and closes at six in the evening, except on holidays.
Our train was delayed for forty minutes, so we missed the connection and had to wait.
Good software is tested, documented, reviewed, and maintained over many years.
The committee approved the budget after a long discussion about priorities and risks.
Children learn languages quickly when they hear them every day at home and at school.
He cooked pasta with tomatoes, garlic, olive oil, and fresh basil from the garden.
Scientists measured the temperature of the ocean at different depths during the expedition.
The river flows through the valley, past old villages, farms, and forests.
Mountains, lakes, islands, and deserts: the country has every kind of landscape.
Nous avons visité le musée du Louvre, puis nous avons dîné dans un petit restaurant.
Il faut réfléchir avant de parler, surtout quand la situation est délicate.
La géographie, l'économie et la littérature sont des matières très intéressantes.
Les données sont stockées sur un serveur sécurisé et sauvegardées chaque nuit.
Mi abuela cocina la mejor paella del mundo los domingos por la tarde.
Los científicos descubrieron una nueva especie de mariposa en la selva.
La canción que escuchamos ayer en la radio era muy bonita y alegre.
Hay que comprar pan, leche, huevos y azúcar en el supermercado.
Ich möchte gern eine Tasse Tee mit Zitrone und ein Stück Kuchen.
Wir fahren im Sommer an die Nordsee und im Winter in die Alpen.
Die Bundesregierung hat neue Gesetze über Umweltschutz beschlossen.
Fußgänger müssen an der Ampel warten, bis das grüne Licht erscheint.
Eu gosto de caminhar na praia ao pôr do sol com os meus amigos.
As crianças brincam no parque enquanto os pais conversam no banco.
W Krakowie jest piękny rynek i stary zamek na wzgórzu Wawel.
Dzieci bawią się w ogrodzie, a babcia piecze ciasto z jabłkami.
Praha je hlavní město České republiky a leží na řece Vltavě.
İstanbul iki kıtada yer alan büyük ve tarihi bir şehirdir.
Türkçe öğrenmek zor değil, ama düzenli çalışmak gerekiyor.
В библиотеке много интересных книг по истории, математике и физике.
Завтра мы поедем на поезде в Санкт-Петербург, чтобы увидеть Эрмитаж.
Программисты пишут код, тестируют его и исправляют ошибки.
Зимой в Сибири очень холодно, а летом бывает жарко.
Учні вивчають українську мову, літературу та історію.
Το καλοκαίρι πηγαίνουμε στα νησιά για να κολυμπήσουμε στη θάλασσα.
Η φιλοσοφία και τα μαθηματικά γεννήθηκαν στην αρχαία Ελλάδα.
Ο καιρός σήμερα είναι ζεστός και ο ουρανός είναι καθαρός.
يدرس الطلاب في الجامعة الرياضيات والفيزياء والكيمياء.
تقع مدينة دمشق في سوريا وهي من أقدم المدن في العالم.
نحن نشرب الشاي بالنعناع في الصباح مع الخبز والجبن.
我喜欢在周末看书和听音乐。学生们在图书馆学习。
上海是一个现代化的大城市，有很多高楼。
日本語を勉強しています。毎日新しい言葉を覚えます。
駅の近くに新しいレストランができました。
한국어를 배우는 것은 재미있습니다. 학생들은 도서관에서 공부합니다.
class Point { constructor(x, y) { this.x = x; this.y = y; } }
let total = items.iter().map(|x| x.price * x.qty).sum::<f64>();
while (queue.length > 0) { const node = queue.shift(); visit(node); }
try: value = int(text) except ValueError: value = 0
#include <stdio.h> int main(void) { printf("hello\\n"); return 0; }
<div class="header"><a href="/index.html">Home</a></div>
x = [i * i for i in range(10) if i % 2 == 0]
HTTP/1.1 200 OK Content-Type: application/json; charset=utf-8
Version 2.3.1 was released on 2023-11-05 with 17 bug fixes and 4 new features.
Call +1 (555) 010-9999 or +44 20 7946 0958 between 9:00 and 17:30.
The end.
"""


# tiny-xlmr-spm only: CORPUS plus these lines (Vietnamese, Thai, Hindi, Hebrew, katakana-rich Japanese, Korean),
# so that SentencePiece learns pieces for scripts that the other tokenizers leave to [UNK]/<unk>, as the real
# XLM-R vocabulary covers them. The training input is normalized with nmt_nfkc first, so half-width katakana,
# full-width ASCII, ligatures etc. in a text map onto these pieces only through the Precompiled normalizer.
SPM_EXTRA_CORPUS = """\
Hà Nội là thủ đô của Việt Nam, nổi tiếng với hồ Hoàn Kiếm và phố cổ.
Tôi thích uống cà phê sữa đá vào buổi sáng trước khi đi làm.
Người dân ở đồng bằng sông Cửu Long trồng lúa và nuôi cá.
Học sinh đang chuẩn bị cho kỳ thi cuối năm ở trường.
Hôm nay trời mưa nên chúng tôi ở nhà xem phim.
Xin chào, bạn có khỏe không? Cảm ơn, tôi khỏe.
กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย
ฉันชอบกินข้าวผัดและต้มยำกุ้งมาก
วันนี้อากาศร้อนมาก เราจะไปว่ายน้ำที่ทะเล
นักเรียนอ่านหนังสือในห้องสมุดทุกวัน
भारत एक विशाल देश है जहाँ कई भाषाएँ बोली जाती हैं।
मुझे सुबह चाय पीना और अखबार पढ़ना पसंद है।
दिल्ली भारत की राजधानी है और यहाँ बहुत लोग रहते हैं।
बच्चे पार्क में खेल रहे हैं और माता-पिता बातें कर रहे हैं।
ירושלים היא עיר עתיקה עם היסטוריה ארוכה.
אני אוהב לקרוא ספרים בערב לפני השינה.
הילדים משחקים בגן אחרי בית הספר.
מזג האוויר היום נעים ושמשי.
コンピューターとインターネットは私たちの生活を変えました。
カタカナで書かれた言葉はコーヒー、テレビ、ラーメンなどです。
アイスクリームとチョコレートケーキを食べました。
大阪の人はたこ焼きとお好み焼きが大好きです。
부산은 한국에서 두 번째로 큰 도시입니다.
우리는 주말에 산에 가서 등산을 했습니다.
김치와 불고기는 한국의 대표적인 음식입니다.
"""


def corpus_lines() -> list[str]:
    lines = [l for l in CORPUS.splitlines() if l.strip()]
    # Deterministic extra material: every line a few times, plus joined pairs, so frequent pieces win.
    out = []
    for rep in range(3):
        out.extend(lines)
        out.extend(f"{lines[i]} {lines[(i * 7 + rep) % len(lines)]}" for i in range(len(lines)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------------------
# The trainers of the `tokenizers` library are not deterministic from run to run (measured with 0.22.2 on
# this corpus, same process: the WordPieceTrainer's 2000-token vocabularies differ in ~300 tokens between
# runs; the UnigramTrainer's scores differ by up to 3e-3), because they iterate Rust hash maps with random
# seeds. So the vocabularies are chosen here, deterministically, with the library's own normalizers and
# pre-tokenizers; the tokenizers themselves (models, normalizers, pre-tokenizers, post-processors,
# decoders, tokenizer.json) are built and serialized by the `tokenizers` library.
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_counts(normalizer, pre_tokenizer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in corpus_lines():
        for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)):
            counts[w] = counts.get(w, 0) + 1
    return counts


def wordpiece_vocab(counts: dict[str, int], vocab_size: int, limit_alphabet: int = 400) -> list[str]:
    """BPE-style WordPiece vocabulary (what WordPieceTrainer does), with every tie broken by string order."""
    char_freq: dict[str, int] = {}
    for w, f in counts.items():
        for c in w:
            char_freq[c] = char_freq.get(c, 0) + f
    alphabet = sorted(char_freq, key=lambda c: (-char_freq[c], c))[:limit_alphabet]
    alpha = set(alphabet)
    vocab = list(BERT_SPECIALS)
    vocab += sorted(alphabet)
    cont = sorted({c for w in counts for c in w[1:] if c in alpha})
    vocab += ["##" + c for c in cont]
    # Words as symbol lists; words with an out-of-alphabet char are left out of the merges.
    words = [
        ([w[0]] + ["##" + c for c in w[1:]], f)
        for w, f in sorted(counts.items())
        if all(c in alpha for c in w)
    ]
    known = set(vocab)
    while len(vocab) < vocab_size:
        pairs: dict[tuple[str, str], int] = {}
        for syms, f in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + f
        if not pairs:
            break
        best_n = max(pairs.values())
        if best_n < 2:
            break
        a, b = min(p for p, n in pairs.items() if n == best_n)
        new = a + b[2:]
        for syms, _ in words:
            i = 0
            while i < len(syms) - 1:
                if syms[i] == a and syms[i + 1] == b:
                    syms[i : i + 2] = [new]
                i += 1
        if new not in known:
            known.add(new)
            vocab.append(new)
    return vocab


def make_wordpiece(lowercase: bool, vocab_size: int) -> Tokenizer:
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = wordpiece_vocab(word_counts(normalizer, pre_tokenizer), vocab_size)
    tok = Tokenizer(
        models.WordPiece(
            {t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", continuing_subword_prefix="##",
            max_input_chars_per_word=100,
        )
    )
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in BERT_SPECIALS])
    for i, s in enumerate(BERT_SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def unigram_vocab(counts: dict[str, int], vocab_size: int, max_piece_len: int = 10) -> list[tuple[str, float]]:
    """Unigram pieces: every character of the corpus, then the substrings that save the most characters
    (frequency x (length - 1)); score = log relative frequency, minus a tiny rank term so no two pieces tie."""
    sub: dict[str, int] = {}
    for w, f in counts.items():
        for i in range(len(w)):
            for j in range(i + 1, min(len(w), i + max_piece_len) + 1):
                s = w[i:j]
                sub[s] = sub.get(s, 0) + f
    chars = sorted((s for s in sub if len(s) == 1), key=lambda s: (-sub[s], s))
    n_multi = vocab_size - len(XLMR_SPECIALS) - 1 - len(chars)  # -1: <mask>
    multi = sorted(
        (s for s in sub if len(s) > 1 and sub[s] >= 3), key=lambda s: (-sub[s] * (len(s) - 1), s)
    )[:n_multi]
    pieces = sorted(chars + multi, key=lambda s: (-sub[s], s))
    total = sum(sub[s] for s in pieces)
    return [(s, round(math.log(sub[s] / total) - 1e-5 * r, 6)) for r, s in enumerate(pieces)]


def make_unigram(vocab_size: int) -> Tokenizer:
    normalizer = normalizers.NFKC()
    pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    pieces = unigram_vocab(word_counts(normalizer, pre_tokenizer), vocab_size)
    # xlm-roberta / bge-m3 layout: <s> <pad> </s> <unk> first, <mask> as the last id of the vocabulary.
    vocab = [(s, 0.0) for s in XLMR_SPECIALS] + pieces + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens(
        [AddedToken(s, special=True, normalized=False) for s in XLMR_SPECIALS]
        + [AddedToken("<mask>", special=True, normalized=False, lstrip=True)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    for i, s in enumerate(XLMR_SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    assert tok.token_to_id("<mask>") == len(vocab) - 1 == tok.get_vocab_size() - 1
    return tok

# tiny-xlmr-spm: a real SentencePiece model. Unlike the `tokenizers` trainers, SentencePieceTrainer is
# deterministic when it runs on one thread with a fixed seed and an unshuffled input: the same bytes every run.
SPM_VOCAB_SIZE = 1200  # SentencePiece pieces (<unk> <s> </s> included); the XLM-R vocabulary adds <pad> and <mask>
SPM_SEED = 6060
SPM_OPTIONS = dict(
    model_type="unigram",
    vocab_size=SPM_VOCAB_SIZE,
    normalization_rule_name="nmt_nfkc",  # as XLM-R: the model carries an NFKC precompiled charsmap
    character_coverage=1.0,
    byte_fallback=False,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1,  # sentencepiece's defaults, as in XLM-R's sentencepiece.bpe.model
    num_threads=1,
    shuffle_input_sentence=False,
    hard_vocab_limit=True,
    minloglevel=2,
)


def spm_corpus() -> list[str]:
    return [l for l in (CORPUS + SPM_EXTRA_CORPUS).splitlines() if l.strip()]


def train_sentencepiece() -> bytes:
    """The serialized ModelProto of a unigram SentencePiece model trained on spm_corpus()."""
    import io

    import sentencepiece as spm

    spm.set_random_generator_seed(SPM_SEED)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(spm_corpus()), model_writer=buf, **SPM_OPTIONS)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def randomize_biases_and_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """transformers initialises every bias to 0 and LayerNorm to (1, 0); make them random so that a port
    that forgets a bias or swaps LayerNorm weight and bias gives visibly different outputs. Also shrinks
    the token-type embeddings (see below)."""
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            mod.weight.copy_(1.0 + 0.1 * torch.randn(mod.weight.shape, generator=gen))
            if mod.bias is not None:  # ModernBERT's norm_bias false
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
        elif isinstance(mod, torch.nn.Linear) and mod.bias is not None:
            mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
    # The token-type row is added to every token; at std 0.2 it is a large shared component that makes
    # CLS, mean and max pooling nearly parallel (cos(cls, mean) up to 0.97). At std 0.05 they differ clearly.
    # (MPNet has no token types.)
    if getattr(getattr(model, "embeddings", None), "token_type_embeddings", None) is not None:
        model.embeddings.token_type_embeddings.weight.mul_(0.25)


def make_bert(vocab_size: int, max_pos: int, seed: int) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_act="gelu",
        max_position_embeddings=max_pos,
        type_vocab_size=2,
        initializer_range=INIT_RANGE,
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )
    model = BertModel(cfg)  # base model: keys without a "bert." prefix (pooler included, unused)
    gen = torch.Generator().manual_seed(seed + 1)
    randomize_biases_and_norms(model, gen)
    return model.eval()


def make_xlmr(vocab_size: int, seed: int, max_pos: int = 2562) -> XLMRobertaModel:
    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_act="gelu",
        # tiny-xlmr-m3: positions 2..2561, 2560 tokens fit, like bge-m3's 8194 rows / 8192 tokens.
        max_position_embeddings=max_pos,
        type_vocab_size=1,
        initializer_range=INIT_RANGE,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        position_embedding_type="absolute",
    )
    model = XLMRobertaModel(cfg)  # keys without a "roberta." prefix
    gen = torch.Generator().manual_seed(seed + 1)
    randomize_biases_and_norms(model, gen)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------
# sentence-transformers files
# ---------------------------------------------------------------------------------------------------------
def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def modules_json(with_normalize: bool) -> list[dict]:
    mods = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if with_normalize:
        mods.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    return mods


def full_pooling(mode: str) -> dict:
    return {
        "word_embedding_dimension": HIDDEN,
        "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": mode == "max",
        "pooling_mode_mean_sqrt_len_tokens": mode == "mean_sqrt_len",
        "pooling_mode_weightedmean_tokens": mode == "weightedmean",
        "pooling_mode_lasttoken": mode == "lasttoken",
        "include_prompt": True,
    }


def st_config(prompts: dict[str, str] | None = None) -> dict:
    # Fixed versions (not the running ones) so that the file is reproducible byte for byte.
    return {
        "__version__": {"sentence_transformers": "5.1.2", "transformers": "4.56.2", "pytorch": "2.9.1"},
        "model_type": "SentenceTransformer",
        "prompts": dict(prompts or {}),
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }


def write_st_files(d: Path, pooling: dict, with_normalize: bool, max_seq_length: int, do_lower_case: bool,
                   prompts: dict[str, str] | None = None) -> None:
    write_json(d / "modules.json", modules_json(with_normalize))
    write_json(d / "1_Pooling" / "config.json", pooling)
    # No 2_Normalize/ folder: ST saves nothing for Normalize and git cannot hold an empty folder, so real
    # models (all-MiniLM-L6-v2, bge-m3) list "2_Normalize" in modules.json without shipping the folder.
    write_json(d / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": do_lower_case})
    write_json(d / "config_sentence_transformers.json", st_config(prompts))


# ---------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------
CHECK_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Search engines rank documents by similarity.",
    "Die Straße ist nass, weil es geregnet hat.",
    "El niño comió una manzana en el jardín.",
    "The price rose by 12.5% to $19.99 on Monday.",
    "Сегодня хорошая погода.",
    "Москва является столицей России.",
    "def add(a, b): return a + b",
    "Where is the library? Près de l'église.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "北京是中国的首都。",
]


@torch.no_grad()
def pooling_check(name: str, model_dir: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    enc = tok(CHECK_TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
    h = model(**enc)[0]
    assert torch.isfinite(h).all(), f"{name}: non-finite hidden states"
    m = enc["attention_mask"].unsqueeze(-1).float()
    cls = h[:, 0]
    mean = (h * m).sum(1) / m.sum(1)
    mx = h.masked_fill(m == 0, -1e9).max(1).values
    cos = torch.nn.functional.cosine_similarity
    c_cm, c_cx, c_mx = cos(cls, mean), cos(cls, mx), cos(mean, mx)
    n_unk = int((enc["input_ids"] == tok.unk_token_id).sum())
    print(
        f"  {name}: cos(cls, mean) max {c_cm.max():.3f} mean {c_cm.mean():.3f}; "
        f"cos(cls, max) max {c_cx.max():.3f}; cos(mean, max) max {c_mx.max():.3f}; "
        f"|cls| {cls.norm(dim=-1).mean():.2f}; unk tokens in check texts: {n_unk}"
    )
    assert c_cm.max() < 0.95 and c_cm.mean() < 0.9, f"{name}: CLS and mean pooling too similar"
    assert c_cx.max() < 0.95 and c_mx.max() < 0.95, f"{name}: max pooling too similar to CLS or mean"


def st_load_check(model_dir: Path, expect_dim: int) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    e = st.encode(CHECK_TEXTS[:3], convert_to_numpy=True)
    assert e.shape == (3, expect_dim) and np.isfinite(e).all()
    print(f"  sentence-transformers loads {model_dir.name}: {st} -> {e.shape}")


@torch.no_grad()
def prompt_check(model_dir: Path) -> None:
    """sentence-transformers loads the prompts and include_prompt=false, plain encode() applies no prompt, and
    encode(prompt_name="query") leaves the prompt's tokens out of the mean."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    for k, v in BERT_MEAN_PROMPTS.items():
        assert st.prompts.get(k) == v, (k, st.prompts)
    assert st.default_prompt_name is None and st[1].include_prompt is False
    texts = CHECK_TEXTS[:3]
    plain = st.encode(texts, convert_to_tensor=True)
    bare = st.encode(texts, convert_to_tensor=True, prompt="")
    q = st.encode(texts, convert_to_tensor=True, prompt_name="query")
    assert torch.equal(plain, bare), "plain encode() applied a prompt"
    n_prompt = st.tokenize([BERT_MEAN_PROMPTS["query"]])["input_ids"].shape[1] - 1
    model = st[0].auto_model
    for t, v in zip(texts, q):
        h = model(**st.tokenize([BERT_MEAN_PROMPTS["query"] + t]))[0][0]
        ref = torch.nn.functional.normalize(h[n_prompt:].mean(0), dim=0)
        assert (ref - v).abs().max() < 1e-5, "prompt tokens not left out of the mean"
    c = torch.nn.functional.cosine_similarity(plain, q).min()
    print(f"  tiny-bert-mean: prompt_name='query' masks {n_prompt} tokens; min cos(plain, query) {c:.3f}")


def dir_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def tree_digest(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------------------
BERT_MEAN_PROMPTS = {"query": "query: ", "passage": "passage: "}


def build_bert_mean(out: Path) -> None:
    d = out / "tiny-bert-mean"
    tok = make_wordpiece(lowercase=True, vocab_size=2000)
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=True,
        strip_accents=True,
        tokenize_chinese_chars=True,
        model_max_length=512,
    )
    fast.save_pretrained(d, legacy_format=False)
    model = make_bert(tok.get_vocab_size(), max_pos=512, seed=1001)
    model.save_pretrained(d, safe_serialization=True)
    # Prompts by name, none applied by default; include_prompt false: when encode() is given a prompt, Pooling
    # masks its first prompt_length tokens (len(tokenize([prompt])) - 1 for the trailing [SEP], so [CLS] too).
    pooling = full_pooling("mean")
    pooling["include_prompt"] = False
    write_st_files(d, pooling, with_normalize=True, max_seq_length=64, do_lower_case=False, prompts=BERT_MEAN_PROMPTS)

    # The pitfall: baked-in truncation/padding blocks (all-MiniLM-L6-v2 ships truncation 128 / Fixed(128)
    # while its max_seq_length is 256). Python transformers resets them on every call; Rust must override.
    tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    tj["truncation"] = {"direction": "Right", "max_length": 16, "strategy": "LongestFirst", "stride": 0}
    tj["padding"] = {
        "strategy": {"Fixed": 24},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    (d / "tokenizer.json").write_text(json.dumps(tj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # Python must still load it and must ignore the baked-in blocks.
    t = transformers.AutoTokenizer.from_pretrained(d)
    long_text = " ".join(["the"] * 40)
    n = len(t(long_text, truncation=True, max_length=64)["input_ids"])
    assert n == 42, f"transformers applied the baked-in truncation? got {n} tokens"
    n_short = len(t("the")["input_ids"])
    assert n_short == 3, f"transformers applied the baked-in Fixed padding? got {n_short} tokens"
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    assert len(raw.encode(long_text).ids) == 24, "raw tokenizers should apply the baked-in blocks (16 -> pad 24)"
    print(f"  tiny-bert-mean: vocab {tok.get_vocab_size()}; baked-in truncation 16/Fixed 24 ignored by transformers")


def build_bert_cls(out: Path) -> None:
    d = out / "tiny-bert-cls"
    tok = make_wordpiece(lowercase=False, vocab_size=2400)
    fast = BertTokenizerFast(
        tokenizer_object=tok, do_lower_case=False, strip_accents=False, tokenize_chinese_chars=True
    )
    fast.save_pretrained(d, legacy_format=False)
    model = make_bert(tok.get_vocab_size(), max_pos=128, seed=2002)
    model.save_pretrained(d, safe_serialization=True)
    # Partial pooling config on purpose: the Pooling constructor defaults apply to the omitted keys.
    pooling = {
        "word_embedding_dimension": HIDDEN,
        "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    write_st_files(d, pooling, with_normalize=False, max_seq_length=48, do_lower_case=True)
    t = transformers.AutoTokenizer.from_pretrained(d)
    assert t("Hello")["input_ids"] != t("hello")["input_ids"] or t.unk_token_id in t("Hello")["input_ids"]
    print(f"  tiny-bert-cls: vocab {tok.get_vocab_size()} (cased)")


# The normalizer settings that transformers' BertTokenizerFast.__init__ (4.56.2,
# models/bert/tokenization_bert_fast.py) forces onto the tokenizer.json BertNormalizer of
# tiny-bert-cased-config-override: its kwargs come from tokenizer_config.json, with the defaults
# do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True for keys that are absent.
CONFIG_OVERRIDE_NORMALIZER = {"lowercase": True, "strip_accents": False, "handle_chinese_chars": False}


def build_bert_cased_config_override(out: Path) -> None:
    """tiny-bert-cls copied byte for byte, then only tokenizer_config.json and sentence_bert_config.json edited."""
    src, d = out / "tiny-bert-cls", out / "tiny-bert-cased-config-override"
    shutil.copytree(src, d)
    tc = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tc["tokenizer_class"] in ("BertTokenizer", "BertTokenizerFast"), tc["tokenizer_class"]
    assert tc["strip_accents"] is False and tc["tokenize_chinese_chars"] is True and tc["do_lower_case"] is False
    del tc["do_lower_case"]  # absent: BertTokenizerFast's default do_lower_case=True applies
    tc["tokenize_chinese_chars"] = False
    # Same serialization as transformers' save_pretrained (sorted keys, indent 2, trailing newline).
    (d / "tokenizer_config.json").write_text(
        json.dumps(tc, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    # sentence-transformers itself must not lowercase: only the tokenizer override does.
    st = json.loads((src / "sentence_bert_config.json").read_text(encoding="utf-8"))
    st["do_lower_case"] = False
    write_json(d / "sentence_bert_config.json", st)
    norm = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))["normalizer"]
    assert norm["type"] == "BertNormalizer" and norm["lowercase"] is False and norm["strip_accents"] is False
    assert norm["handle_chinese_chars"] is True


def config_override_check(out: Path) -> None:
    """tiny-bert-cased-config-override: the Python tokenizer lowercases and does not split CJK ideographs although
    tokenizer.json says otherwise; raw `tokenizers` follows tokenizer.json; tokenizer.json with the normalizer
    replaced as BertTokenizerFast does gives the Python ids."""
    from sentence_transformers import SentenceTransformer

    d, cls_dir = out / "tiny-bert-cased-config-override", out / "tiny-bert-cls"
    a, b = tree_digest(cls_dir), tree_digest(d)
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    assert differ == ["sentence_bert_config.json", "tokenizer_config.json"], differ
    tc = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "do_lower_case" not in tc and tc["tokenize_chinese_chars"] is False

    t = transformers.AutoTokenizer.from_pretrained(d)
    assert isinstance(t, BertTokenizerFast), type(t)
    state = json.loads(t.backend_tokenizer.normalizer.__getstate__())
    assert {k: state[k] for k in CONFIG_OVERRIDE_NORMALIZER} == CONFIG_OVERRIDE_NORMALIZER, state
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    # What a port must do: tokenizer.json with the BertNormalizer rebuilt from the tokenizer_config.json kwargs.
    mirrored = Tokenizer.from_file(str(d / "tokenizer.json"))
    mirrored.normalizer = normalizers.BertNormalizer(clean_text=True, **CONFIG_OVERRIDE_NORMALIZER)
    t_cls = transformers.AutoTokenizer.from_pretrained(cls_dir)

    def auto(text: str) -> list[int]:
        return t(text)["input_ids"]

    assert auto("Hello") == auto("hello"), "transformers did not lowercase"
    assert raw.encode("Hello").ids != raw.encode("hello").ids, "raw tokenizer.json lowercased"
    cjk = "北京是中国的首都"
    n_raw = len(raw.encode(cjk, add_special_tokens=False).ids)
    n_auto = len(t(cjk, add_special_tokens=False)["input_ids"])
    assert n_raw == len(cjk) and n_auto < len(cjk), (n_raw, n_auto)
    mixed = "Hello World, 北京是中国的首都。 Straße"
    ids_auto, ids_raw = auto(mixed), raw.encode(mixed).ids
    assert ids_auto != ids_raw
    texts = CHECK_TEXTS + [
        "Hello", "hello", cjk, mixed, "ÉCOLE Élève", "東京は日本の首都です。", "서울은 한국의 수도입니다.",
    ]
    n_diff = 0
    for x in texts:
        assert mirrored.encode(x).ids == auto(x), f"mirrored normalizer differs from transformers on {x!r}"
        assert t_cls(x)["input_ids"] == raw.encode(x).ids, f"tiny-bert-cls transformers differs from raw on {x!r}"
        n_diff += auto(x) != raw.encode(x).ids
    st = SentenceTransformer(str(d), device="cpu")
    assert st[0].do_lower_case is False
    assert st.tokenize([mixed])["input_ids"][0].tolist() == ids_auto, "sentence-transformers tokenizes differently"
    print(f"  tiny-bert-cased-config-override: AutoTokenizer normalizer {CONFIG_OVERRIDE_NORMALIZER} "
          f"(tokenizer.json: lowercase false, handle_chinese_chars true)")
    print(f"    'Hello' -> {auto('Hello')} == 'hello' -> {auto('hello')}; raw tokenizer.json 'Hello' -> "
          f"{raw.encode('Hello').ids}, 'hello' -> {raw.encode('hello').ids}")
    print(f"    {cjk!r}: raw {n_raw} tokens (one per ideograph), AutoTokenizer {n_auto} "
          f"({t.convert_ids_to_tokens(t(cjk, add_special_tokens=False)['input_ids'])})")
    print(f"    {mixed!r}: AutoTokenizer {ids_auto} != raw {ids_raw}")
    print(f"    {n_diff} of {len(texts)} check texts tokenize differently; tokenizer.json with the overridden "
          f"BertNormalizer reproduces AutoTokenizer on all; sentence-transformers (do_lower_case false) agrees")


# ---------------------------------------------------------------------------------------------------------
# tiny-bert-dense: a post-pooling sentence_transformers.models.Dense (cls + max + mean_sqrt_len pooling, 3 x 32 =
# 96 wide, then Linear(96, 24) + tanh, then Normalize). A port that skips the Dense module (as TEI once did) or its
# activation gets unrelated vectors; one that concatenates the pooling modes in another order than
# sentence-transformers' (cls, max, mean, mean_sqrt_len, weightedmean, lasttoken) feeds the Linear the wrong columns.
DENSE_OUT = 24
DENSE_POOLING = ("cls", "max", "mean_sqrt_len")
# Weight scale: pooled vectors have |v| ~ 20-27 (the mean_sqrt_len part grows with sqrt(tokens)), so std 0.03
# keeps the pre-activation at std ~0.7: |pre| < 2 for ~99% of the entries, tanh clearly curved but not saturated.
DENSE_WEIGHT_STD = 0.03
DENSE_BIAS_STD = 0.1
DENSE_ACTIVATION = "torch.nn.modules.activation.Tanh"  # sentence_transformers.util.fullname(torch.nn.Tanh())


def dense_pooling() -> dict:
    return {
        "word_embedding_dimension": HIDDEN,
        "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": True,
        "pooling_mode_mean_sqrt_len_tokens": True,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }


@torch.no_grad()
def build_bert_dense(out: Path) -> None:
    from sentence_transformers.models import Dense

    d = out / "tiny-bert-dense"
    # The uncased tokenizer of tiny-bert-mean, rebuilt (same vocabulary, same tokenizer_config.json and
    # special_tokens_map.json), but without tiny-bert-mean's baked-in truncation/padding blocks: this model tests
    # the Dense module only.
    tok = make_wordpiece(lowercase=True, vocab_size=2000)
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=True,
        strip_accents=True,
        tokenize_chinese_chars=True,
        model_max_length=512,
    )
    fast.save_pretrained(d, legacy_format=False)
    model = make_bert(tok.get_vocab_size(), max_pos=512, seed=4004)
    model.save_pretrained(d, safe_serialization=True)
    write_json(d / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(d / "1_Pooling" / "config.json", dense_pooling())
    # No 3_Normalize/ folder (see write_st_files).
    write_json(d / "sentence_bert_config.json", {"max_seq_length": 64, "do_lower_case": False})
    write_json(d / "config_sentence_transformers.json", st_config())

    in_features = HIDDEN * len(DENSE_POOLING)
    torch.manual_seed(4100)
    dense = Dense(in_features=in_features, out_features=DENSE_OUT, bias=True, activation_function=torch.nn.Tanh())
    gen = torch.Generator().manual_seed(4101)
    dense.linear.weight.copy_(DENSE_WEIGHT_STD * torch.randn(dense.linear.weight.shape, generator=gen))
    dense.linear.bias.copy_(DENSE_BIAS_STD * torch.randn(dense.linear.bias.shape, generator=gen))
    (d / "2_Dense").mkdir(parents=True)
    dense.save(str(d / "2_Dense"))  # the library's own files: config.json + model.safetensors

    mean_files = tree_digest(out / "tiny-bert-mean")
    for f in ["tokenizer_config.json", "special_tokens_map.json"]:
        assert tree_digest(d)[f] == mean_files[f], f"{f} differs from tiny-bert-mean's"
    a = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    b = json.loads((out / "tiny-bert-mean" / "tokenizer.json").read_text(encoding="utf-8"))
    assert a["truncation"] is None and a["padding"] is None
    b["truncation"] = b["padding"] = None
    assert a == b, "tokenizer.json differs from tiny-bert-mean's beyond the truncation/padding blocks"
    print(f"  tiny-bert-dense: vocab {tok.get_vocab_size()} (tiny-bert-mean's, no baked-in blocks); "
          f"Dense({in_features} -> {DENSE_OUT}, tanh)")


@torch.no_grad()
def dense_check(model_dir: Path) -> None:
    """sentence-transformers loads Transformer -> Pooling (cls + max + mean_sqrt_len) -> Dense -> Normalize, the
    2_Dense files are what Dense.save wrote, and encode() equals a by-hand recomputation from the files."""
    from safetensors import safe_open
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    kinds = [type(m).__name__ for m in st]
    assert kinds == ["Transformer", "Pooling", "Dense", "Normalize"], kinds
    in_features = HIDDEN * len(DENSE_POOLING)
    assert st[1].get_pooling_mode_str() == "+".join(
        {"cls": "cls", "max": "max", "mean_sqrt_len": "mean_sqrt_len_tokens"}[m] for m in DENSE_POOLING)
    assert st[1].get_sentence_embedding_dimension() == in_features
    assert st.get_sentence_embedding_dimension() == DENSE_OUT
    assert isinstance(st[2].activation_function, torch.nn.Tanh)

    files = sorted(p.name for p in (model_dir / "2_Dense").iterdir())
    assert files == ["config.json", "model.safetensors"], files
    cfg = json.loads((model_dir / "2_Dense" / "config.json").read_text(encoding="utf-8"))
    want = {"in_features": in_features, "out_features": DENSE_OUT, "bias": True, "activation_function": DENSE_ACTIVATION}
    assert cfg == want, cfg
    with safe_open(str(model_dir / "2_Dense" / "model.safetensors"), "pt") as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        w, b = f.get_tensor("linear.weight"), f.get_tensor("linear.bias")
        meta = f.metadata()
    assert shapes == {"linear.bias": [DENSE_OUT], "linear.weight": [DENSE_OUT, in_features]}, shapes
    assert w.dtype == b.dtype == torch.float32

    # By hand: one text at a time (no padding), pooled in sentence-transformers' concatenation order.
    texts = CHECK_TEXTS + corpus_lines()[:60]
    hf = st[0].auto_model
    pooled = []
    for t in texts:
        h = hf(**st.tokenize([t]))[0][0]
        pooled.append(torch.cat([h[0], h.max(0).values, h.sum(0) / math.sqrt(h.shape[0])]))
    v = torch.stack(pooled)
    pre = v @ w.T + b
    ref = torch.nn.functional.normalize(torch.tanh(pre), dim=-1)
    got = st.encode(texts, convert_to_tensor=True, batch_size=8)
    assert got.shape == (len(texts), DENSE_OUT)
    dmax = float((got - ref).abs().max())
    assert dmax < 1e-5, f"sentence-transformers differs from the by-hand Dense by {dmax}"
    frac2 = float((pre.abs() < 2).float().mean())
    frac1 = float((pre.abs() < 1).float().mean())
    assert frac2 > 0.95, f"tanh too saturated: only {frac2:.1%} of |pre-activation| < 2"
    cos = torch.nn.functional.cosine_similarity
    no_tanh = torch.nn.functional.normalize(pre, dim=-1)
    no_bias = torch.nn.functional.normalize(torch.tanh(v @ w.T), dim=-1)
    print(f"  tiny-bert-dense: modules {' -> '.join(kinds)}, output dim {st.get_sentence_embedding_dimension()}; "
          f"2_Dense/ {files}, config {cfg}, safetensors {shapes} metadata {meta}")
    print(f"    by hand vs encode(): max abs {dmax:.2e}; |pooled| mean {v.norm(dim=-1).mean():.1f}; pre-activation "
          f"std {pre.std():.2f}, |pre| < 1: {frac1:.0%}, < 2: {frac2:.1%}, max {pre.abs().max():.2f}; "
          f"min cos with tanh dropped {cos(ref, no_tanh).min():.4f}, with bias dropped {cos(ref, no_bias).min():.4f}")


@torch.no_grad()
def save_m3_heads(d: Path, model: XLMRobertaModel, t, seed: int) -> float:
    """M3 heads, exactly as bge-m3 ships them: torch.save(nn.Linear(...).state_dict()) into sparse_linear.pt and
    colbert_linear.pt. Returns the fraction of (non-special) corpus tokens with a positive sparse weight."""
    torch.manual_seed(seed)
    colbert = torch.nn.Linear(HIDDEN, HIDDEN)
    sparse = torch.nn.Linear(HIDDEN, 1)
    # Choose the sparse bias so that about half of the (non-special) tokens get a positive relu weight.
    enc = t(corpus_lines()[:60], padding=True, truncation=True, max_length=128, return_tensors="pt")
    h = model(**enc)[0]
    keep = enc["attention_mask"].bool() & (enc["input_ids"] > 3)
    raw = (h @ sparse.weight[0])[keep]
    sparse.bias.copy_(-raw.median().reshape(1) + 0.05 * raw.std())
    frac = float(((raw + sparse.bias) > 0).float().mean())
    torch.save(sparse.state_dict(), d / "sparse_linear.pt")
    torch.save(colbert.state_dict(), d / "colbert_linear.pt")
    return frac


@torch.no_grad()
def build_xlmr(out: Path) -> None:
    d = out / "tiny-xlmr-m3"
    tok = make_unigram(vocab_size=1500)
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=2560)
    fast.save_pretrained(d, legacy_format=False)
    vocab_size = tok.get_vocab_size()  # including <mask>
    model = make_xlmr(vocab_size, seed=3005)
    model.save_pretrained(d, safe_serialization=True)
    write_st_files(d, full_pooling("cls"), with_normalize=True, max_seq_length=2560, do_lower_case=False)
    t = transformers.AutoTokenizer.from_pretrained(d)
    frac = save_m3_heads(d, model, t, seed=3100)
    print(f"  tiny-xlmr-m3: vocab {vocab_size} (<mask> = {vocab_size - 1}); sparse: {frac:.0%} of tokens positive")

    # Python-side sanity of the tokenizer layout.
    assert (t.bos_token_id, t.pad_token_id, t.eos_token_id, t.unk_token_id) == (0, 1, 2, 3)
    assert t.mask_token_id == vocab_size - 1
    assert t.model_max_length == 2560

    # tiny-xlmr-m3-pth: identical files, encoder weights as a zip-format torch.save state dict.
    p = out / "tiny-xlmr-m3-pth"
    shutil.copytree(d, p, ignore=shutil.ignore_patterns("model.safetensors"))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(sd, p / "pytorch_model.bin")
    a = transformers.AutoModel.from_pretrained(d, dtype=torch.float32).eval()
    b = transformers.AutoModel.from_pretrained(p, dtype=torch.float32).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    print("  tiny-xlmr-m3-pth: pytorch_model.bin loads to the same tensors as model.safetensors")


# Pairs that the nmt_nfkc Precompiled normalizer must make equal (NFKC: half-width katakana, full-width ASCII,
# ligature, superscript, compatibility ideographic space; composition of a combining accent).
SPM_NFKC_PAIRS = [
    ("ｶﾀｶﾅ ﾃﾚ", "カタカナ テレ"),
    ("ＡＢＣ　１２３", "ABC 123"),
    ("ﬁle ﬂow", "file flow"),
    ("x² + y³", "x2 + y3"),
    ("cafe\u0301", "café"),
]
# A half-width katakana with a half-width voiced mark (6 UTF-8 bytes): SentencePiece (the slow tokenizer) and
# NFKC give the precomposed ビ (U+30D3); the `tokenizers` Precompiled normalizer (the fast tokenizer, so every
# Python library here) looks up only graphemes shorter than 6 bytes whole and maps this one char by char, to
# ヒ + U+3099 (combining voiced mark), which the vocabulary tokenizes differently (<unk> for U+3099).
SPM_VOICED_HALFWIDTH = ("ﾃﾚﾋﾞ", "テレビ")


@torch.no_grad()
def build_xlmr_spm(out: Path) -> None:
    """tiny-xlmr-spm: the tokenizer made as XLM-R's was (SentencePiece model -> XLMRobertaTokenizer -> converted
    fast tokenizer), a fresh random XLM-R with 514 positions, bge-m3's sentence-transformers files and M3 heads."""
    from sentencepiece import sentencepiece_model_pb2
    from transformers import XLMRobertaTokenizer
    from transformers.convert_slow_tokenizer import convert_slow_tokenizer

    d = out / "tiny-xlmr-spm"
    d.mkdir(parents=True)
    proto_bytes = train_sentencepiece()
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(proto_bytes)
    assert proto.trainer_spec.model_type == sentencepiece_model_pb2.TrainerSpec.UNIGRAM
    assert proto.normalizer_spec.name == "nmt_nfkc" and len(proto.normalizer_spec.precompiled_charsmap) > 0
    assert [p.piece for p in proto.pieces[:3]] == ["<unk>", "<s>", "</s>"] and len(proto.pieces) == SPM_VOCAB_SIZE
    spm_file = d / "sentencepiece.bpe.model"  # the file name XLMRobertaTokenizer uses (and bge-m3 ships)
    spm_file.write_bytes(proto_bytes)

    # The slow (SentencePiece) tokenizer, saved as a slow-only checkpoint, then loaded with from_slow=True: transformers
    # converts it with convert_slow_tokenizer (XLMRobertaConverter). Not XLMRobertaTokenizerFast(vocab_file=...):
    # that builds the slow tokenizer with mask_token=AddedToken("<mask>", lstrip=True), whose normalized=True ends
    # up in tokenizer.json; nor tokenizer_object=convert_slow_tokenizer(...): its deepcopy round-trips the scores
    # through a lossy serialization (-7.2456769943237305 becomes -7.245676994323731).
    slow = XLMRobertaTokenizer(vocab_file=str(spm_file), model_max_length=512)
    with tempfile.TemporaryDirectory() as tmp:
        slow.save_pretrained(tmp)
        assert sorted(os.listdir(tmp)) == ["sentencepiece.bpe.model", "special_tokens_map.json", "tokenizer_config.json"]
        fast = XLMRobertaTokenizerFast.from_pretrained(tmp, from_slow=True)
    # from_slow lands in init_kwargs and would be saved into tokenizer_config.json, where it would make every
    # later from_pretrained() ignore tokenizer.json and convert sentencepiece.bpe.model again.
    assert fast.init_kwargs.pop("from_slow") is True
    converted = json.loads(convert_slow_tokenizer(slow).to_str())
    got = json.loads(fast.backend_tokenizer.to_str())
    for k in ["normalizer", "pre_tokenizer", "model", "decoder", "post_processor"]:
        assert got[k] == converted[k], f"{k} differs from convert_slow_tokenizer's"
    mask = [a for a in got["added_tokens"] if a["content"] == "<mask>"]
    assert len(mask) == 1 and mask[0]["lstrip"] and not mask[0]["normalized"], mask
    fast.save_pretrained(d)  # legacy_format None: tokenizer.json and (the slow format) sentencepiece.bpe.model
    assert spm_file.read_bytes() == proto_bytes, "save_pretrained rewrote sentencepiece.bpe.model"
    assert not (d / "added_tokens.json").exists()
    assert "from_slow" not in json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))

    tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    norm, pre = tj["normalizer"], tj["pre_tokenizer"]
    norm_types = [n["type"] for n in norm["normalizers"]] if norm["type"] == "Sequence" else [norm["type"]]
    assert "Precompiled" in norm_types, norm_types
    assert pre["type"] == "Metaspace" and pre["replacement"] == "▁", pre
    assert tj["model"]["type"] == "Unigram" and tj["truncation"] is None and tj["padding"] is None

    vocab_size = fast.backend_tokenizer.get_vocab_size()  # SentencePiece pieces + <pad> + <mask>
    assert vocab_size == SPM_VOCAB_SIZE + 2
    model = make_xlmr(vocab_size, seed=6006, max_pos=514)  # like xlm-roberta-base: 512 tokens + pad offset
    model.save_pretrained(d, safe_serialization=True)
    write_st_files(d, full_pooling("cls"), with_normalize=True, max_seq_length=512, do_lower_case=False)
    t = transformers.AutoTokenizer.from_pretrained(d)
    frac = save_m3_heads(d, model, t, seed=6100)

    # Python-side sanity of the tokenizer layout.
    assert isinstance(t, XLMRobertaTokenizerFast), type(t)
    assert (t.bos_token_id, t.pad_token_id, t.eos_token_id, t.unk_token_id) == (0, 1, 2, 3)
    assert t.mask_token_id == vocab_size - 1 and t.model_max_length == 512
    # AutoTokenizer loads tokenizer.json (no conversion) and changes nothing in it: raw `tokenizers` gives its ids.
    # (Only the float parse of the scores may differ in the last bit: tokenizers reads -7.2456769943237305, the
    # exact float32 score, as -7.245676994323731, 1 ulp off; a deepcopy or a save/load round trip shows it.)
    loaded = json.loads(transformers.AutoTokenizer.from_pretrained(d).backend_tokenizer.to_str())  # fresh: unpadded
    lv, fv = loaded["model"].pop("vocab"), dict(tj["model"]).pop("vocab")
    assert {**loaded, "model": None} == {**tj, "model": None}
    assert loaded["model"] == {k: v for k, v in tj["model"].items() if k != "vocab"}
    assert [p for p, _ in lv] == [p for p, _ in fv] and all(abs(a - b) <= 1e-14 * abs(b) for (_, a), (_, b) in zip(lv, fv))
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    probe = CHECK_TEXTS + spm_corpus()[-25:] + [x for pair in SPM_NFKC_PAIRS for x in pair]
    for x in probe + list(SPM_VOICED_HALFWIDTH):
        assert raw.encode(x).ids == t(x)["input_ids"], f"tokenizer.json differs from AutoTokenizer on {x!r}"
    for a, b in SPM_NFKC_PAIRS:
        assert t(a)["input_ids"] == t(b)["input_ids"], f"Precompiled normalizer: {a!r} and {b!r} differ"
    # The converted tokenizer agrees with SentencePiece itself (the slow tokenizer) on ordinary texts...
    s_slow = XLMRobertaTokenizer(vocab_file=str(spm_file))
    for x in probe:
        assert s_slow(x)["input_ids"] == t(x)["input_ids"], f"slow and fast tokenizers differ on {x!r}"
    # ... but not on a half-width voiced katakana (see SPM_VOICED_HALFWIDTH).
    half, full = SPM_VOICED_HALFWIDTH
    assert unicodedata.normalize("NFKC", half) == full
    assert t.backend_tokenizer.normalizer.normalize_str(half) == unicodedata.normalize("NFD", full)
    assert s_slow(half)["input_ids"] == s_slow(full)["input_ids"] == t(full)["input_ids"] != t(half)["input_ids"]
    n_unk = sum(t.unk_token_id in t(x)["input_ids"] for x in spm_corpus())
    print(f"  tiny-xlmr-spm: SentencePiece unigram, {len(proto.pieces)} pieces from {len(spm_corpus())} lines "
          f"({len(proto_bytes)} bytes, nmt_nfkc charsmap {len(proto.normalizer_spec.precompiled_charsmap)} bytes); "
          f"vocab {vocab_size} (<mask> = {vocab_size - 1}); corpus lines with <unk>: {n_unk}; "
          f"sparse: {frac:.0%} of tokens positive")
    print(f"    tokenizer.json normalizer {norm['type']}{norm_types}, pre_tokenizer {pre}, decoder "
          f"{tj['decoder']['type']}; slow == fast == raw tokenizer.json on {len(probe)} probes; NFKC pairs equal")
    print(f"    {half!r}: SentencePiece {s_slow.tokenize(half)} (== {full!r}), fast tokenizer {t.tokenize(half)} "
          f"(ids {t(half)['input_ids'][1:-1]})")
    # The fast tokenizer (what every library here loads) needs only tokenizer.json; dropping the slow
    # SentencePiece file keeps the model well under 1 MB.
    spm_file.unlink()
    assert t(probe[0])["input_ids"] == transformers.AutoTokenizer.from_pretrained(d)(probe[0])["input_ids"]
    assert dir_size(d) < 800_000, f"tiny-xlmr-spm is {dir_size(d)} bytes"


# ---------------------------------------------------------------------------------------------------------
# MPNet (all-mpnet-base-v2's layout) and DeBERTa-v2 (a model type embcheck does not implement)
# ---------------------------------------------------------------------------------------------------------
MPNET_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]"]  # as microsoft/mpnet-base: <s>=0 <pad>=1 </s>=2 <unk>=3


def make_mpnet_wordpiece(vocab_size: int) -> Tokenizer:
    """An uncased WordPiece in MPNet's layout: the vocabulary of make_wordpiece(lowercase=True) after MPNet's
    special tokens, <mask> last; post-processor <s> $A </s> (pair: <s> $A </s> </s> $B </s>)."""
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = wordpiece_vocab(word_counts(normalizer, pre_tokenizer), vocab_size)[len(BERT_SPECIALS):]
    vocab = MPNET_SPECIALS + words + ["<mask>"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in MPNET_SPECIALS]
                           + [AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.decoder = decoders.WordPiece(prefix="##")
    assert tok.token_to_id("<mask>") == len(vocab) - 1
    return tok


MPNET_BIAS_STD = 1.0  # relative_attention_bias scaled from initializer_range 0.2 to std 1: a wrong bucket shows


def build_mpnet(out: Path) -> None:
    d = out / "tiny-mpnet"
    tok = make_mpnet_wordpiece(vocab_size=2000)
    fast = MPNetTokenizerFast(tokenizer_object=tok, do_lower_case=True, strip_accents=None, model_max_length=512)
    fast.save_pretrained(d, legacy_format=False)
    torch.manual_seed(7007)
    cfg = MPNetConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE, hidden_act="gelu", max_position_embeddings=514, initializer_range=INIT_RANGE,
        layer_norm_eps=1e-5, relative_attention_num_buckets=32, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    model = MPNetModel(cfg, add_pooling_layer=False)
    randomize_biases_and_norms(model, torch.Generator().manual_seed(7008))
    with torch.no_grad():
        w = model.encoder.relative_attention_bias.weight
        w.mul_(MPNET_BIAS_STD / w.std())
    model.eval().save_pretrained(d, safe_serialization=True)
    write_st_files(d, full_pooling("mean"), with_normalize=True, max_seq_length=512, do_lower_case=False)
    t = transformers.AutoTokenizer.from_pretrained(d)
    assert type(t).__name__.startswith("MPNetTokenizer"), type(t)
    assert (t.cls_token_id, t.pad_token_id, t.sep_token_id) == (0, 1, 2), (t.cls_token_id, t.pad_token_id, t.sep_token_id)
    ids = t("The quick brown fox")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2, ids
    print(f"  tiny-mpnet: vocab {tok.get_vocab_size()}, relative bias std {MPNET_BIAS_STD}, ids {ids}")


def build_deberta_v2(out: Path) -> None:
    d = out / "tiny-deberta-v2"
    tok = make_wordpiece(lowercase=True, vocab_size=2000)
    fast = BertTokenizerFast(tokenizer_object=tok, do_lower_case=True, strip_accents=True, tokenize_chinese_chars=True,
                             model_max_length=512)
    fast.save_pretrained(d, legacy_format=False)
    torch.manual_seed(8008)
    cfg = DebertaV2Config(
        vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE, hidden_act="gelu", max_position_embeddings=512, initializer_range=INIT_RANGE,
        relative_attention=True, position_buckets=64, pos_att_type=["p2c", "c2p"], type_vocab_size=0, pad_token_id=0,
    )
    model = DebertaV2Model(cfg)
    randomize_biases_and_norms(model, torch.Generator().manual_seed(8009))
    model.eval().save_pretrained(d, safe_serialization=True)
    write_st_files(d, full_pooling("cls"), with_normalize=True, max_seq_length=128, do_lower_case=False)
    # tokenizer_config.json names BertTokenizer(Fast): AutoTokenizer loads it whatever the model type.
    assert type(transformers.AutoTokenizer.from_pretrained(d)).__name__.startswith("BertTokenizer")
    print(f"  tiny-deberta-v2: vocab {tok.get_vocab_size()} (model_type {cfg.model_type})")


def build_distilbert(out: Path, sinusoidal: bool) -> None:
    d = out / ("tiny-distilbert-sinusoidal" if sinusoidal else "tiny-distilbert")
    tok = make_wordpiece(lowercase=True, vocab_size=2000)
    fast = DistilBertTokenizerFast(tokenizer_object=tok, do_lower_case=True, strip_accents=True,
                                   tokenize_chinese_chars=True, model_max_length=512)
    fast.save_pretrained(d, legacy_format=False)
    torch.manual_seed(9009 if sinusoidal else 9000)
    cfg = DistilBertConfig(
        vocab_size=tok.get_vocab_size(), dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTERMEDIATE,
        activation="gelu", max_position_embeddings=512, initializer_range=INIT_RANGE, pad_token_id=0,
        sinusoidal_pos_embds=sinusoidal,
    )
    model = DistilBertModel(cfg)
    randomize_biases_and_norms(model, torch.Generator().manual_seed(9100 if sinusoidal else 9101))
    if sinusoidal:
        # Sinusoid rows have norm sqrt(dim / 2) = 4, words std 0.2 (norm ~1.1): the positions would dominate and
        # CLS, mean and max pooling would come out alike. Words scaled to std 1 keep the texts apart.
        with torch.no_grad():
            model.embeddings.word_embeddings.weight.mul_(5.0)
    model.eval().save_pretrained(d, safe_serialization=True)
    if sinusoidal:
        # A checkpoint without the (computable) position table: transformers initializes it as sinusoids.
        from safetensors.torch import load_file, save_file

        from transformers.models.distilbert.modeling_distilbert import create_sinusoidal_embeddings

        w = load_file(d / "model.safetensors")
        w.pop("embeddings.position_embeddings.weight")
        save_file(w, d / "model.safetensors", metadata={"format": "pt"})
        reloaded = transformers.AutoModel.from_pretrained(d).embeddings.position_embeddings.weight
        table = torch.empty(cfg.max_position_embeddings, cfg.dim)
        create_sinusoidal_embeddings(cfg.max_position_embeddings, cfg.dim, table)
        assert torch.equal(reloaded, table), "transformers did not compute the missing table as sinusoids"
        write_st_files(d, full_pooling("cls"), with_normalize=False, max_seq_length=128, do_lower_case=False)
    else:
        write_st_files(d, full_pooling("mean"), with_normalize=True, max_seq_length=128, do_lower_case=False)
    assert type(transformers.AutoTokenizer.from_pretrained(d)).__name__.startswith("DistilBertTokenizer")
    print(f"  {d.name}: vocab {tok.get_vocab_size()}, sinusoidal positions {sinusoidal}")



# ---------------------------------------------------------------------------------------------------------
# ModernBERT (answerdotai/ModernBERT-base's layout: byte-level BPE, [CLS] $A [SEP], rotary positions, global and
# sliding-window local attention, GeGLU)
# ---------------------------------------------------------------------------------------------------------
MODERNBERT_SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]  # after the BPE vocabulary, as in ModernBERT-base


def byte_level_bpe(merges_wanted: int) -> Tokenizer:
    """A byte-level BPE (GPT-2 style pre-tokenizer, no normalizer, no prefix space) whose merges are chosen
    deterministically: the most frequent adjacent pair over the corpus words, ties broken by the pair's text
    (the tokenizers library's BpeTrainer breaks ties by hash order, which varies from run to run)."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    counts: dict[str, int] = {}
    for line in corpus_lines():
        for w, _ in pre.pre_tokenize_str(line):
            counts[w] = counts.get(w, 0) + 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = list(alphabet)
    words = {w: list(w) for w in counts}
    merges = []
    for _ in range(merges_wanted):
        pairs: dict[tuple[str, str], int] = {}
        for w, parts in words.items():
            for a, b in zip(parts, parts[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + counts[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab.append(best[0] + best[1])
        for w, parts in words.items():
            i, out = 0, []
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    out.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            words[w] = out
    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.BPE(ids, merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in MODERNBERT_SPECIALS[:4]]
                           + [AddedToken("[MASK]", special=True, normalized=False, lstrip=True)])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


# name -> (seed, layers, local_attention, global_attn_every_n_layers, thetas (global, local), biases, pooling,
#          normalize, max_seq_length)
MODERNBERT_VARIANTS = {
    # ModernBERT-base's choices (no biases anywhere, global every 3rd layer) at a window of 16 tokens (8 on each
    # side), so that most texts are longer than it; mean pooling + Normalize as modernbert-embed-base.
    "tiny-modernbert": (12000, 4, 16, 3, (160000.0, 10000.0), False, "mean", True, 512),
    # Biases on (norm_bias, attention_bias, mlp_bias), a window of 10 (5 each side), global every 2nd layer,
    # other thetas; CLS pooling + Normalize as gte-modernbert-base.
    "tiny-modernbert-cls": (12100, 3, 10, 2, (80000.0, 5000.0), True, "cls", True, 512),
}


def build_modernbert(out: Path, name: str) -> None:
    seed, layers, window, every, (g_theta, l_theta), biases, pooling, normalize, max_seq = MODERNBERT_VARIANTS[name]
    d = out / name
    tok = byte_level_bpe(merges_wanted=700)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]", model_max_length=8192,
                                   model_input_names=["input_ids", "attention_mask"])
    fast.save_pretrained(d, legacy_format=False)
    torch.manual_seed(seed)
    ids = {s: tok.token_to_id(s) for s in MODERNBERT_SPECIALS}
    cfg = ModernBertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN, num_hidden_layers=layers, num_attention_heads=HEADS,
        intermediate_size=48, hidden_activation="gelu", max_position_embeddings=8192, initializer_range=INIT_RANGE,
        norm_eps=1e-5, norm_bias=biases, attention_bias=biases, mlp_bias=biases, global_rope_theta=g_theta,
        local_rope_theta=l_theta, local_attention=window, global_attn_every_n_layers=every,
        pad_token_id=ids["[PAD]"], cls_token_id=ids["[CLS]"], sep_token_id=ids["[SEP]"], bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
    )
    model = ModernBertModel(cfg)
    with torch.no_grad():
        # ModernBERT initializes with std initializer_range (and smaller for deeper outputs); random biases and
        # norms as for the other families.
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, INIT_RANGE)
        randomize_biases_and_norms(model, torch.Generator().manual_seed(seed + 1))
    model.eval().save_pretrained(d, safe_serialization=True)
    write_st_files(d, full_pooling(pooling), with_normalize=normalize, max_seq_length=max_seq, do_lower_case=False)
    t = transformers.AutoTokenizer.from_pretrained(d)
    enc = t("The quick brown fox")["input_ids"]
    assert enc[0] == ids["[CLS]"] and enc[-1] == ids["[SEP]"], enc
    print(f"  {name}: vocab {tok.get_vocab_size()}, layers {layers}, window {window} (global every {every}), "
          f"thetas {g_theta}/{l_theta}, biases {biases}, ids {enc}")


# ---------------------------------------------------------------------------------------------------------
# Decoder embedders (Qwen3-Embedding's and e5-mistral's layouts: byte-level BPE, last-token pooling)
# ---------------------------------------------------------------------------------------------------------
QWEN3_QUERY = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
E5_QUERY = "Instruct: Retrieve semantically similar text.\nQuery: "


def decoder_bpe(specials: list[str], template: str) -> Tokenizer:
    """tiny-modernbert's byte-level BPE with the decoder's special tokens after the vocabulary and its template:
    "$A <|endoftext|>" (Qwen3-Embedding's tokenizer.json appends EOS) or "<s> $A" (Llama / Mistral: BOS, no EOS)."""
    tok = byte_level_bpe(merges_wanted=700)
    base = tok.get_vocab_size(with_added_tokens=False)
    # A fresh tokenizer: byte_level_bpe's [CLS]/[SEP]/... added tokens are not wanted here.
    ids = {t: i for t, i in tok.get_vocab(with_added_tokens=False).items()}
    merges = [tuple(m.split(" ")) for m in json.loads(tok.to_str())["model"]["merges"]] if isinstance(
        json.loads(tok.to_str())["model"]["merges"][0], str) else [tuple(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    out = Tokenizer(models.BPE(ids, merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    out.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    out.decoder = decoders.ByteLevel()
    out.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    assert out.token_to_id(specials[0]) == base, (out.token_to_id(specials[0]), base)
    single = template.split()
    named = [t for t in single if t != "$A"]
    out.post_processor = processors.TemplateProcessing(
        single=template, pair=template + " " + " ".join(t if t != "$A" else "$B" for t in single),
        special_tokens=[(t, out.token_to_id(t)) for t in named])
    return out


# name -> (class, seed, layers, heads, kv heads, head_dim, config extras, tokenizer specials, template,
#          special tokens, padding side, pooling, prompts)
DECODER_VARIANTS = {
    # Qwen3-Embedding-0.6B's layout: q/k norms, GQA (6 query heads on 2 key/value heads), head_dim 8 (query width
    # 48, not the hidden 32), the tokenizer appends <|endoftext|>, left padding, last-token pooling + Normalize,
    # the query instruction as a prompt.
    "tiny-qwen3": ("Qwen3", 15000, 3, 6, 2, 8, {"rope_theta": 1000.0, "attention_bias": False},
                   ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "$A <|endoftext|>",
                   {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, "left", "lasttoken", {"query": QWEN3_QUERY}),
    # tiny-qwen3's layout and tokenizer files, saved by Qwen2TokenizerFast as Qwen3-Embedding's are
    # (tokenizer_class Qwen2Tokenizer): transformers 5 rebuilds that class's tokenizer in code (NFC, Qwen2's split
    # pattern) from the file's vocabulary, so its ids differ from tokenizer.json as it is (GPT-2's pattern here).
    "tiny-qwen3-qwen2tok": ("Qwen3", 15050, 3, 6, 2, 8, {"rope_theta": 1000.0, "attention_bias": False},
                            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "$A <|endoftext|>",
                            {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, "left", "lasttoken", {"query": QWEN3_QUERY}),
    # e5-mistral's layout: BOS only (the card appends EOS by hand), 4 query heads on 1 key/value head, a sliding
    # window of 8 tokens on every layer (most texts are longer), right padding.
    "tiny-mistral": ("Mistral", 15100, 2, 4, 1, None, {"rope_theta": 10000.0, "sliding_window": 8},
                     ["<unk>", "<s>", "</s>"], "<s> $A",
                     {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}, "right",
                     "lasttoken", {"query": E5_QUERY}),
    # Llama with every bias (attention_bias, mlp_bias), plain multi-head attention, RoPE theta 500000; mean pooling
    # without the prompt (include_prompt false), no Normalize.
    "tiny-llama": ("Llama", 15200, 2, 4, 4, None, {"rope_theta": 500000.0, "attention_bias": True, "mlp_bias": True},
                   ["<unk>", "<s>", "</s>"], "<s> $A",
                   {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}, "right",
                   "mean", {"query": E5_QUERY}),
}


def build_decoder(out: Path, name: str) -> None:
    cls, seed, layers, heads, kv, head_dim, extra, specials, template, named, side, pooling, prompts = DECODER_VARIANTS[name]
    d = out / name
    tok = decoder_bpe(specials, template)
    tokenizer_cls = transformers.Qwen2TokenizerFast if name == "tiny-qwen3-qwen2tok" else PreTrainedTokenizerFast
    fast = tokenizer_cls(tokenizer_object=tok, model_max_length=8192, padding_side=side,
                         model_input_names=["input_ids", "attention_mask"], **named)
    fast.save_pretrained(d, legacy_format=False)
    torch.manual_seed(seed)
    config_cls = getattr(transformers, f"{cls}Config")
    model_cls = getattr(transformers, f"{cls}Model")
    ids = {k: tok.token_to_id(v) for k, v in named.items()}
    kw = dict(vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN, num_hidden_layers=layers, num_attention_heads=heads,
              num_key_value_heads=kv, intermediate_size=48, hidden_act="silu", max_position_embeddings=8192,
              initializer_range=INIT_RANGE, rms_norm_eps=1e-6, pad_token_id=ids["pad_token"],
              eos_token_id=ids["eos_token"], bos_token_id=ids.get("bos_token"), tie_word_embeddings=False, **extra)
    if head_dim is not None:
        kw["head_dim"] = head_dim
    model = model_cls(config_cls(**kw))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mname, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, INIT_RANGE)
            elif mname.endswith("norm.weight"):  # RMSNorm weights (1 by default): random, so a swapped one shows
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif mname.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    model.eval().save_pretrained(d, safe_serialization=True)
    pool = full_pooling(pooling)
    if name == "tiny-llama":
        pool["include_prompt"] = False
    write_st_files(d, pool, with_normalize=pooling == "lasttoken", max_seq_length=512, do_lower_case=False, prompts=prompts)
    t = transformers.AutoTokenizer.from_pretrained(d)
    enc = t("The quick brown fox")["input_ids"]
    assert t.padding_side == side, t.padding_side
    print(f"  {name}: {cls}, vocab {tok.get_vocab_size()}, layers {layers}, heads {heads}/{kv}, ids {enc}")
# EmbeddingGemma-style Gemma 3 (transformers 5 only: 4.56 has no use_bidirectional_attention)
# ---------------------------------------------------------------------------------------------------------
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # ids 0..3, as in Gemma 3's vocabulary

# EmbeddingGemma-300m's config_sentence_transformers.json prompts (a subset; the same strings).
EMBEDDINGGEMMA_PROMPTS = {
    "query": "task: search result | query: ",
    "document": "title: none | text: ",
    "Clustering": "task: clustering | query: ",
    "Classification": "task: classification | query: ",
    "STS": "task: sentence similarity | query: ",
}

# name -> (seed, hidden, layers, heads, kv heads, head_dim, query_pre_attn_scalar, intermediate, sliding_window,
#          layer_types, thetas (global, local), softcap)
GEMMA_VARIANTS = {
    # EmbeddingGemma-300m's choices at tiny size: bidirectional, 2 query heads per key head, head_dim 16 wider
    # than hidden / heads, query_pre_attn_scalar unequal to head_dim, a sliding window of 8 (4 keys each side
    # once bidirectional) in 3 of 4 layers, RoPE thetas 1e6 / 1e4, no softcapping.
    "tiny-embeddinggemma": (15000, 32, 4, 4, 2, 16, 24, 48, 8,
                            ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
                            (1_000_000.0, 10_000.0), None),
}


def gemma_bpe(merges_wanted: int) -> Tokenizer:
    """tiny-modernbert's deterministic byte-level BPE with Gemma's special tokens first (<pad> <eos> <bos> <unk>)
    and a post-processor that prepends <bos> (Gemma's tokenizer adds BOS, not EOS)."""
    base = byte_level_bpe(merges_wanted)
    vocab = sorted(((t, i) for t, i in base.get_vocab(with_added_tokens=False).items()), key=lambda x: x[1])
    ids = {s: i for i, s in enumerate(GEMMA_SPECIALS)}
    for t, _ in vocab:
        ids[t] = len(ids)
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in json.loads(base.to_str())["model"]["merges"]]
    tok = Tokenizer(models.BPE(ids, merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in GEMMA_SPECIALS])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", ids["<bos>"])])
    return tok


def build_gemma(out: Path, name: str) -> None:
    from sentence_transformers.models import Dense
    from transformers import Gemma3TextConfig, Gemma3TextModel

    if int(transformers.__version__.split(".")[0]) < 5:
        raise SystemExit(f"{name}: needs transformers 5 (use_bidirectional_attention); run with .venv-ref5/bin/python")
    seed, hidden, layers, heads, kv, head_dim, qpas, inter, window, types, (g_theta, l_theta), softcap = \
        GEMMA_VARIANTS[name]
    d = out / name
    tok = gemma_bpe(merges_wanted=700)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>", model_max_length=2048, padding_side="right",
                                   model_input_names=["input_ids", "attention_mask"])
    fast.save_pretrained(d)
    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, query_pre_attn_scalar=qpas,
        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=2048, rms_norm_eps=1e-6,
        sliding_window=window, layer_types=types, attn_logit_softcapping=softcap, use_bidirectional_attention=True,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": g_theta},
                         "sliding_attention": {"rope_type": "default", "rope_theta": l_theta}},
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    model = Gemma3TextModel(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, INIT_RANGE if "embed" not in n else 1.0 / math.sqrt(hidden), generator=gen)
            else:
                # Gemma's RMSNorm multiplies by (1 + w), w initialized to 0: random w so that a port computing
                # x·w (or forgetting a norm) is caught.
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.eval().save_pretrained(d, safe_serialization=True)
    # sentence-transformers: mean pooling, Dense(hidden -> 2·hidden) and Dense(2·hidden -> 24), no bias, Identity,
    # then Normalize: EmbeddingGemma-300m's chain (768 -> 3072 -> 768) at tiny size.
    mods = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 4, "name": "4", "path": "4_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    write_json(d / "modules.json", mods)
    pooling = dict(full_pooling("mean"), word_embedding_dimension=hidden)
    write_json(d / "1_Pooling" / "config.json", pooling)
    for folder, (i, o) in [("2_Dense", (hidden, 2 * hidden)), ("3_Dense", (2 * hidden, 24))]:
        dense = Dense(i, o, bias=False, activation_function=torch.nn.Identity())
        with torch.no_grad():
            dense.linear.weight.normal_(0.0, 1.0 / math.sqrt(i), generator=gen)
        (d / folder).mkdir(parents=True, exist_ok=True)
        dense.save(str(d / folder))
    write_json(d / "sentence_bert_config.json", {"max_seq_length": 2048, "do_lower_case": False})
    write_json(d / "config_sentence_transformers.json", dict(st_config(EMBEDDINGGEMMA_PROMPTS), __version__={
        "sentence_transformers": "6.2.0", "transformers": "5.24.0", "pytorch": "2.15.0"}))
    t = transformers.AutoTokenizer.from_pretrained(d)
    enc = t("The quick brown fox")["input_ids"]
    assert enc[0] == 2 and enc[-1] != 1, enc
    print(f"{name}: vocab {tok.get_vocab_size()}, layers {types}, window {window}, heads {heads}/{kv}, "
          f"head_dim {head_dim}, ids {enc}")


README = """\
# Tiny test models

Random-weight models (hidden 32, 2 layers, 4 heads, intermediate 64, `initializer_range` 0.2, random
biases and LayerNorm parameters, token-type rows scaled to std 0.05 so that CLS, mean and max pooling
differ clearly) and small tokenizers (WordPiece / Unigram vocabularies chosen deterministically from a
small multilingual corpus in the script, built with the `tokenizers` library, whose own trainers are not
deterministic from run to run; except `tiny-xlmr-spm`, whose SentencePiece model is trained by
`sentencepiece`, deterministic on one thread). They are not meant to embed anything meaningfully: they exist
so that the Rust pipelines can be compared with the Python libraries on every code path, quickly, and without
downloads. All files are generated; do not edit them by hand. Regenerate with

    bash scripts/setup-reference-env.sh                # once: the Python reference stack in .venv-ref
    .venv-ref/bin/python scripts/make_tiny_models.py   # rewrites fixtures/models/*

and then regenerate the references in `fixtures/suites/` (see `scripts/README.md`): new weights change
every reference.

| directory | what it exercises |
|---|---|
| `tiny-bert-mean/` | BERT, uncased WordPiece (BertNormalizer lowercase + strip accents). sentence-transformers: mean pooling (every `pooling_mode_*` key explicit) + Normalize (listed in `modules.json`; no `2_Normalize/` folder, as on the hub), `max_seq_length` 64. Prompts: `config_sentence_transformers.json` has `"prompts": {"query": "query: ", "passage": "passage: "}` and `"default_prompt_name": null` (so plain `encode()` uses none), and `1_Pooling/config.json` has `"include_prompt": false`: with `encode(..., prompt_name="query")` sentence-transformers leaves the prompt's tokens (`len(tokenize(["query: "])) - 1`, i.e. `[CLS] query :`) out of the mean. **Pitfall:** `tokenizer.json` carries a baked-in `truncation` (max_length 16) and `padding` (`Fixed(24)`) block, like all-MiniLM-L6-v2 (128/128 vs max_seq_length 256). Python transformers ignores them; a Rust port that uses `Tokenizer::from_file` as is truncates to 16 and pads to 24. |
| `tiny-bert-cls/` | BERT, **cased** WordPiece, 128 positions. sentence-transformers: CLS pooling with a **partial** `1_Pooling/config.json` (only cls/mean/max/mean_sqrt_len keys; the Pooling constructor defaults apply to the rest), **no** Normalize module, `sentence_bert_config.json` with `do_lower_case: true` (ST lowercases the text in Python before the cased tokenizer) and `max_seq_length` 48. |
| `tiny-bert-cased-config-override/` | **Pitfall:** `tiny-bert-cls` byte for byte (same weights, same `tokenizer.json` whose `BertNormalizer` says `lowercase: false`, `strip_accents: false`, `handle_chinese_chars: true`) except two files: `tokenizer_config.json` has **no** `do_lower_case` and `"tokenize_chinese_chars": false`, and `sentence_bert_config.json` has `do_lower_case: false`. transformers' `BertTokenizerFast.__init__` rewrites the `tokenizer.json` normalizer from its kwargs, which come from `tokenizer_config.json` with the defaults `do_lower_case=True`, `strip_accents=None`, `tokenize_chinese_chars=True`: so every Python library (transformers, FlagEmbedding, sentence-transformers) lowercases ("Hello" and "hello" get the same ids) and keeps CJK ideographs inside words (an all-ideograph word becomes one WordPiece word, here `[UNK]`), while `Tokenizer::from_file` on `tokenizer.json` as is does neither. A port must rebuild the normalizer as `BertNormalizer(lowercase=true, strip_accents=false, handle_chinese_chars=false)`. |
| `tiny-bert-dense/` | **Pitfall:** a post-pooling `Dense` module. BERT, uncased WordPiece (`tiny-bert-mean`'s vocabulary, `tokenizer_config.json` and `special_tokens_map.json`, but no baked-in truncation/padding), `max_seq_length` 64. `modules.json`: Transformer (`""`) -> Pooling (`1_Pooling`) -> Dense (`2_Dense`, `sentence_transformers.models.Dense`) -> Normalize (`3_Normalize`, no folder). Pooling: `cls_token`, `max_tokens` and `mean_sqrt_len_tokens` true, every other mode false (all keys written), concatenated in sentence-transformers' order cls, max, mean_sqrt_len (sum / sqrt(tokens)): 96 wide. `2_Dense/` as `Dense.save` (5.1.2) writes it: `config.json` (indent 4, no trailing newline) `{"in_features": 96, "out_features": 24, "bias": true, "activation_function": "torch.nn.modules.activation.Tanh"}` and `model.safetensors` (no metadata) with `linear.weight` F32 [24, 96] and `linear.bias` F32 [24] (weights std 0.03, bias std 0.1: the pre-activation stays mostly in (-2, 2), so tanh is curved but not saturated). Output: normalize(tanh(W v + b)), **24** dims, not the hidden size 32; a port that skips the Dense module (as TEI once did) or its tanh gets unrelated vectors. |
| `tiny-xlmr-m3/` | XLM-RoBERTa in BAAI/bge-m3's layout: Unigram tokenizer (NFKC, Metaspace "▁" prepend always), `<s>`=0 `<pad>`=1 `</s>`=2 `<unk>`=3, `<mask>` last; pad 1, LayerNorm eps 1e-5, type_vocab_size 1, **2562 positions** (2560 tokens fit: position ids past 2048). `sparse_linear.pt` (Linear(32, 1)) and `colbert_linear.pt` (Linear(32, 32)) saved as bge-m3 ships them (zip-format `torch.save` of the state dict); the sparse bias makes roughly half the tokens positive. sentence-transformers: CLS pooling + Normalize, `max_seq_length` 2560. Weights in `model.safetensors`. |
| `tiny-xlmr-m3-pth/` | The same model and byte-identical other files, but the encoder weights in `pytorch_model.bin` (zip-format `torch.save` of the state dict, like BAAI/bge-m3) instead of `model.safetensors`. |
| `tiny-mpnet/` | MPNet in all-mpnet-base-v2's layout (`MPNetModel`): uncased WordPiece with `<s>`=0 `<pad>`=1 `</s>`=2 `<unk>`=3, `[UNK]` as the unknown token and `<mask>` (lstrip) last, saved by `MPNetTokenizerFast` (`<s> … </s>`); 514 positions counted from pad + 1 (512 tokens); relative position bias (`encoder.relative_attention_bias`, 32 buckets) scaled to std 1 so that a wrong bucket changes the output clearly; LayerNorm eps 1e-5. sentence-transformers: mean pooling + Normalize, `max_seq_length` 512 (texts past 128 tokens reach the last, capped bucket). |
| `tiny-distilbert/` | DistilBERT (`DistilBertModel`, keys `transformer.layer.N.attention.q_lin` ..., no token types), learned positions, uncased WordPiece (`tiny-bert-mean`'s vocabulary) saved by `DistilBertTokenizerFast`. sentence-transformers: mean pooling + Normalize, `max_seq_length` 128. |
| `tiny-distilbert-sinusoidal/` | DistilBERT with `sinusoidal_pos_embds: true` whose `model.safetensors` leaves out `embeddings.position_embeddings.weight`: transformers computes the missing table as sinusoids (checked equal to the one it saved), and so must a port. sentence-transformers: CLS pooling, no Normalize, `max_seq_length` 128. |
| `tiny-deberta-v2/` | DeBERTa-v2 (`DebertaV2Model`, relative attention p2c + c2p), a model type embcheck does **not** implement: its suite checks systems against the Python references model-free (`check --against`, `gate --candidate` with a system, `diff`). Tokenizer: `tiny-bert-mean`'s WordPiece (`tokenizer_class` BertTokenizer). sentence-transformers: CLS pooling + Normalize, `max_seq_length` 128. |
| `tiny-qwen3/` | Qwen3 (`Qwen3Model`) in Qwen3-Embedding's layout: 3 layers, 6 query heads on 2 key/value heads, `head_dim` 8 (query width 48, hidden 32), q/k RMSNorms, RoPE theta 1000, random RMSNorm weights. Tokenizer: `tiny-modernbert`'s byte-level BPE merges with `<|endoftext|> <|im_start|> <|im_end|>` after the vocabulary, post-processor `$A <|endoftext|>` (EOS appended by the tokenizer, as Qwen3-Embedding's `tokenizer.json`), pad `<|endoftext|>`, `padding_side` left, saved by `PreTrainedTokenizerFast`. sentence-transformers: lasttoken pooling + Normalize, prompt `query` = Qwen3-Embedding's instruction. |
| `tiny-qwen3-qwen2tok/` | `tiny-qwen3`'s layout (other random weights, seed 15050) and tokenizer files, saved by `Qwen2TokenizerFast` as Qwen3-Embedding's are (`tokenizer_class` `Qwen2Tokenizer`, `unk_token` `<|endoftext|>`). transformers 4 uses `tokenizer.json` as it is; transformers 5's `Qwen2Tokenizer` rebuilds the tokenizer from its vocabulary and merges (NFC, Qwen2's split pattern, byte-level without GPT-2's pattern), keeping the file's post-processor (`$A <|endoftext|>`): 17 of the 79 texts of `core`, `unseen` and `edge` get other ids than the file as it is. |
| `tiny-mistral/` | Mistral (`MistralModel`): 2 layers, 4 query heads on 1 key/value head, `sliding_window` 8 on every layer (most texts are longer). Tokenizer: the same merges with `<unk> <s> </s>`, post-processor `<s> $A` (no EOS: e5-mistral's card appends it by hand), pad `</s>`, `padding_side` right. sentence-transformers: lasttoken pooling + Normalize, prompt `query` in e5-mistral's format. |
| `tiny-llama/` | Llama (`LlamaModel`): 2 layers, 4 heads (no grouping), `attention_bias` and `mlp_bias` (random biases), RoPE theta 500000; `tiny-mistral`'s tokenizer with pad `<unk>`. sentence-transformers: mean pooling with `include_prompt: false`, no Normalize. |
| `tiny-modernbert/` | ModernBERT (`ModernBertModel`) in ModernBERT-base's layout at tiny size: 4 layers, global attention in layers 0 and 3 and a sliding window of `local_attention` 16 (8 keys each side) in layers 1 and 2, RoPE thetas 160000 (global) / 10000 (local), GeGLU MLP (intermediate 48), no biases anywhere (`norm_bias`, `attention_bias`, `mlp_bias` false), 8192 positions. Tokenizer: a byte-level BPE (700 merges chosen deterministically from the corpus; `[UNK] [CLS] [SEP] [PAD] [MASK]` after the vocabulary, `[MASK]` lstrip), `[CLS] $A [SEP]`, saved by `PreTrainedTokenizerFast` (as ModernBERT-base). sentence-transformers: mean pooling + Normalize (modernbert-embed-base), `max_seq_length` 512. Most texts are longer than the window. |
| `tiny-modernbert-cls/` | ModernBERT with every bias on, 3 layers, global every 2nd layer, `local_attention` 10 (5 each side), RoPE thetas 80000 / 5000; `tiny-modernbert`'s tokenizer. sentence-transformers: CLS pooling + Normalize (gte-modernbert-base). |
| `tiny-embeddinggemma/` | Gemma 3 text (`Gemma3TextModel`, transformers 5 only: 4.56 has no `use_bidirectional_attention`) in EmbeddingGemma-300m's layout at tiny size: `use_bidirectional_attention` true, hidden 32, 4 layers (`sliding_attention` ×2, `full_attention`, `sliding_attention`), 4 query heads over 2 key/value heads, `head_dim` 16 (wider than hidden / heads), `query_pre_attn_scalar` 24, `sliding_window` 8 (4 keys each side once bidirectional: most texts are longer), RoPE thetas 1e6 (global) / 1e4 (local), GeGLU (`gelu_pytorch_tanh`, intermediate 48), RMSNorm weights random (std 0.3) so that `(1 + w)` matters, 2048 positions. Tokenizer: `tiny-modernbert`'s byte-level BPE merges with Gemma's `<pad> <eos> <bos> <unk>` at ids 0–3 and a post-processor that prepends `<bos>` (no EOS), saved by `PreTrainedTokenizerFast` (right padding). sentence-transformers (files written by its own `Dense.save`): mean pooling, `2_Dense` 32 → 64 and `3_Dense` 64 → 24 (no bias, `Identity`), Normalize — EmbeddingGemma's 768 → 3072 → 768 at tiny size; `max_seq_length` 2048; prompts as EmbeddingGemma's `config_sentence_transformers.json` words them (`query`: `task: search result \\| query: `, `document`: `title: none \\| text: `, ...), no default prompt. |
| `tiny-xlmr-spm/` | XLM-RoBERTa in BAAI/bge-m3's layout with a tokenizer made the way the real XLM-R's was: a SentencePiece **unigram model** (`sentencepiece.SentencePieceTrainer`, 1200 pieces, `normalization_rule_name="nmt_nfkc"`, character coverage 1.0, no byte fallback, one thread, fixed seed; the script's corpus plus Vietnamese, Thai, Hindi, Hebrew, katakana and Korean lines), loaded by `XLMRobertaTokenizer(vocab_file=...)` and converted by transformers (`from_pretrained(..., from_slow=True)`, i.e. `convert_slow_tokenizer`). `tokenizer.json`: normalizer `Sequence[Precompiled (the nmt_nfkc charsmap), Strip(right), Replace(" {2,}" -> "▁")]`, pre-tokenizer `Metaspace` ("▁", prepend always, split), vocabulary 1202 (`<s>`=0 `<pad>`=1 `</s>`=2 `<unk>`=3, `<mask>`=1201, lstrip, not normalized); `sentencepiece.bpe.model` is dropped after the conversion (every library here loads the fast tokenizer). **Pitfalls:** NFKC comes only from the Precompiled charsmap, applied as the `tokenizers` library applies it: a half-width katakana with a half-width voiced mark (`ﾋﾞ`) becomes `ヒ` + U+3099, not `ビ` as in SentencePiece itself and in NFKC (so the slow and fast Python tokenizers differ there; every Python library here uses the fast one). 514 positions, `model_max_length` 512, `max_seq_length` 512 (texts over 512 tokens are truncated). Random weights (seed 6006), M3 heads (seed 6100), sentence-transformers CLS pooling + Normalize. |

Characters that are deliberately not in the tokenizer corpora (emoji, Hebrew, Thai, Devanagari, most CJK
ideographs, the Turkish dotted capital I, ...) become `[UNK]` / `<unk>` (`tiny-xlmr-spm` covers Vietnamese,
Thai, Hindi, Hebrew and more Japanese and Korean, but not emoji).
"""


MODEL_NAMES = [
    "tiny-bert-mean", "tiny-bert-cls", "tiny-bert-cased-config-override", "tiny-bert-dense", "tiny-xlmr-m3",
    "tiny-xlmr-m3-pth", "tiny-xlmr-spm", "tiny-mpnet", "tiny-deberta-v2",
    "tiny-distilbert", "tiny-distilbert-sinusoidal", "tiny-modernbert", "tiny-modernbert-cls",
    "tiny-qwen3", "tiny-qwen3-qwen2tok", "tiny-mistral", "tiny-llama",
    "tiny-embeddinggemma",
]
# Built only by transformers 5 (`.venv-ref5/bin/python scripts/make_tiny_models.py --only tiny-embeddinggemma`);
# the others by the transformers 4 stack.
TRANSFORMERS5_ONLY = {"tiny-embeddinggemma"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "fixtures" / "models"))
    ap.add_argument("--check-determinism", action="store_true", help="build twice and compare sha256 of every file")
    ap.add_argument("--only", nargs="+", choices=MODEL_NAMES, default=None,
                    help="build only these models (the others are left as they are)")
    args = ap.parse_args()
    out = Path(args.out)

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    print(f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
          f"sentence-transformers {sentence_transformers.__version__}")

    builders = {
        "tiny-bert-mean": build_bert_mean, "tiny-bert-cls": build_bert_cls,
        "tiny-bert-cased-config-override": build_bert_cased_config_override, "tiny-bert-dense": build_bert_dense,
        "tiny-xlmr-m3": build_xlmr, "tiny-xlmr-spm": build_xlmr_spm, "tiny-mpnet": build_mpnet,
        "tiny-deberta-v2": build_deberta_v2, "tiny-distilbert": lambda o: build_distilbert(o, False),
        "tiny-distilbert-sinusoidal": lambda o: build_distilbert(o, True),
        "tiny-modernbert": lambda o: build_modernbert(o, "tiny-modernbert"),
        "tiny-modernbert-cls": lambda o: build_modernbert(o, "tiny-modernbert-cls"),
        "tiny-qwen3": lambda o: build_decoder(o, "tiny-qwen3"),
        "tiny-qwen3-qwen2tok": lambda o: build_decoder(o, "tiny-qwen3-qwen2tok"),
        "tiny-mistral": lambda o: build_decoder(o, "tiny-mistral"),
        "tiny-llama": lambda o: build_decoder(o, "tiny-llama"),
        "tiny-embeddinggemma": lambda o: build_gemma(o, "tiny-embeddinggemma"),
    }
    # tiny-xlmr-m3 and tiny-xlmr-m3-pth are built together, and tiny-bert-cased-config-override from tiny-bert-cls.
    tf5 = int(transformers.__version__.split(".")[0]) >= 5
    wanted = set(args.only or [n for n in MODEL_NAMES if (n in TRANSFORMERS5_ONLY) == tf5])
    if not tf5 and wanted & TRANSFORMERS5_ONLY:
        raise SystemExit(f"{sorted(wanted & TRANSFORMERS5_ONLY)}: need transformers 5 (use_bidirectional_attention); "
                         "run .venv-ref5/bin/python scripts/make_tiny_models.py --only tiny-embeddinggemma")
    if "tiny-xlmr-m3-pth" in wanted:
        wanted.add("tiny-xlmr-m3")
    if "tiny-bert-cased-config-override" in wanted:
        wanted.add("tiny-bert-cls")

    def build(target: Path) -> None:
        for name in MODEL_NAMES:
            if name in wanted and (target / name).exists():
                shutil.rmtree(target / name)
            if name == "tiny-xlmr-m3" and name in wanted and (target / "tiny-xlmr-m3-pth").exists():
                shutil.rmtree(target / "tiny-xlmr-m3-pth")
        target.mkdir(parents=True, exist_ok=True)
        for name, builder in builders.items():
            if name in wanted:
                builder(target)

    build(out)
    (out / "README.md").write_text(README, encoding="utf-8")

    print("pooling check (CLS vs mean vs max must differ clearly):")
    for name in [n for n in ["tiny-bert-mean", "tiny-bert-cls", "tiny-bert-dense", "tiny-xlmr-m3", "tiny-xlmr-spm",
                             "tiny-mpnet", "tiny-deberta-v2", "tiny-distilbert", "tiny-distilbert-sinusoidal",
                             "tiny-modernbert", "tiny-modernbert-cls", "tiny-embeddinggemma"] if n in wanted]:
        pooling_check(name, out / name)
    st_load_check(out / "tiny-bert-mean", HIDDEN)
    prompt_check(out / "tiny-bert-mean")
    st_load_check(out / "tiny-bert-cls", HIDDEN)
    st_load_check(out / "tiny-bert-cased-config-override", HIDDEN)
    config_override_check(out)
    st_load_check(out / "tiny-bert-dense", DENSE_OUT)
    dense_check(out / "tiny-bert-dense")
    st_load_check(out / "tiny-xlmr-m3", HIDDEN)
    st_load_check(out / "tiny-xlmr-m3-pth", HIDDEN)
    st_load_check(out / "tiny-xlmr-spm", HIDDEN)
    st_load_check(out / "tiny-mpnet", HIDDEN)
    st_load_check(out / "tiny-deberta-v2", HIDDEN)
    st_load_check(out / "tiny-distilbert", HIDDEN)
    st_load_check(out / "tiny-distilbert-sinusoidal", HIDDEN)
    st_load_check(out / "tiny-modernbert", HIDDEN)
    st_load_check(out / "tiny-modernbert-cls", HIDDEN)
    for name in DECODER_VARIANTS:
        st_load_check(out / name, HIDDEN)
    checks = [
        ("tiny-bert-mean", lambda: (st_load_check(out / "tiny-bert-mean", HIDDEN), prompt_check(out / "tiny-bert-mean"))),
        ("tiny-bert-cls", lambda: st_load_check(out / "tiny-bert-cls", HIDDEN)),
        ("tiny-bert-cased-config-override", lambda: (st_load_check(out / "tiny-bert-cased-config-override", HIDDEN),
                                                     config_override_check(out))),
        ("tiny-bert-dense", lambda: (st_load_check(out / "tiny-bert-dense", DENSE_OUT), dense_check(out / "tiny-bert-dense"))),
        ("tiny-xlmr-m3", lambda: st_load_check(out / "tiny-xlmr-m3", HIDDEN)),
        ("tiny-xlmr-m3-pth", lambda: st_load_check(out / "tiny-xlmr-m3-pth", HIDDEN)),
        ("tiny-xlmr-spm", lambda: st_load_check(out / "tiny-xlmr-spm", HIDDEN)),
        ("tiny-mpnet", lambda: st_load_check(out / "tiny-mpnet", HIDDEN)),
        ("tiny-deberta-v2", lambda: st_load_check(out / "tiny-deberta-v2", HIDDEN)),
        ("tiny-distilbert", lambda: st_load_check(out / "tiny-distilbert", HIDDEN)),
        ("tiny-distilbert-sinusoidal", lambda: st_load_check(out / "tiny-distilbert-sinusoidal", HIDDEN)),
        ("tiny-modernbert", lambda: st_load_check(out / "tiny-modernbert", HIDDEN)),
        ("tiny-modernbert-cls", lambda: st_load_check(out / "tiny-modernbert-cls", HIDDEN)),
        ("tiny-embeddinggemma", lambda: st_load_check(out / "tiny-embeddinggemma", 24)),
    ]
    for name, check in checks:
        if name in wanted:
            check()

    # The two XLM-R directories must agree on every file but the weights.
    if "tiny-xlmr-m3" in wanted:
        a, b = tree_digest(out / "tiny-xlmr-m3"), tree_digest(out / "tiny-xlmr-m3-pth")
        a.pop("model.safetensors"), b.pop("pytorch_model.bin")
        assert a == b, "tiny-xlmr-m3 and tiny-xlmr-m3-pth differ in a non-weight file"

    if args.check_determinism:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp))
            for name in [n for n in MODEL_NAMES if (Path(tmp) / n).exists()]:
                x, y = tree_digest(out / name), tree_digest(Path(tmp) / name)
                bad = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
                assert not bad, f"{name}: not deterministic: {bad}"
        print("determinism: a second build is byte-identical")

    print("sizes:")
    for name in [n for n in MODEL_NAMES if n in wanted]:
        d = out / name
        files = ", ".join(f"{p.relative_to(d)} {p.stat().st_size}" for p in sorted(d.rglob("*")) if p.is_file())
        print(f"  {name}: {dir_size(d) / 1024:.1f} KiB  ({files})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
