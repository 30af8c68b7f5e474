"""Offline text analysis of incoming comments and messages: language, sentiment and spam score.

Language: lingua, restricted to the languages agencies meet, in high-accuracy mode (its models ship in the
wheel). Sentiment: VADER for English and its French port vaderSentiment-fr, both lexicon-based, with a few
domain adjustments below. Spam: a transparent scoring of signals (links, contact off the platform, get-rich,
prizes, follow-bait, phishing vocabulary in French and English), combined as independent evidence.
"""

from __future__ import annotations

import json
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class Analysis:
    """What the moderation workers record about one text."""

    language: str | None  # ISO 639-1 ("fr", "en", ...) or None if unsure
    sentiment: str  # "NEGATIVE" | "NEUTRAL" | "POSITIVE"
    sentiment_score: float  # -1..1
    spam_score: float  # 0..1


# ---------------------------------------------------------------------------------------------------- language

# Each language costs memory (~35 MB of models in high-accuracy mode) and adds confusion on short texts, so the
# detector only knows the languages agencies' audiences write in; the rest come out as one of these or None.
LANGUAGES = ("en", "fr", "es", "de", "it", "pt", "ar")
# lingua answers None when the two best languages are closer than this (log-probability distance): short
# texts such as "Merci !" or "ok" are then left unlabelled rather than guessed.
MIN_RELATIVE_DISTANCE = 0.1
MIN_LETTERS = 3  # "ok", "👍": too little to tell a language

# ---------------------------------------------------------------------------------------------------- sentiment

# VADER's authors suggest +-0.05. On the development part of our labelled set, 0.05 to 0.2 score the same; the
# wider band is kept because moderation rules act on NEGATIVE: weak evidence should stay NEUTRAL.
VADER_NEUTRAL = 0.05  # a sentence scoring less carries no feeling (VADER's own bound)
POSITIVE_FROM = 0.2
NEGATIVE_FROM = -0.2
# Questions ask for information; the sentiment words they carry ("is the water safe?") are rarely the writer's
# feeling, and VADER even amplifies them for each "?". Halved, only a clearly loaded question keeps its polarity.
QUESTION_DAMPING = 0.5

# Words that name the subject of the fields Parvis serves (aid, disasters, illness) or plain politeness, which
# the general-purpose lexicons score: "help", "please", "free", "victims", "cancer" say what a comment is about,
# not how its writer feels. Removed from both lexicons.
TOPIC_WORDS_EN = (
    "help", "helps", "helping", "please", "free", "safe", "safety", "emergency", "disaster", "disasters",
    "victim", "victims", "relief", "rescue", "cancer", "crisis", "war", "hunger", "fire", "affected",
)
TOPIC_WORDS_FR = (
    "aide", "aides", "aidez", "aider", "secours", "sinistre", "sinistres", "urgence", "catastrophe", "victime",
    "victimes", "cancer", "crise", "guerre", "faim", "svp", "plait", "libre", "cher", "chere",
)

# Emojis carry much of the sentiment of short comments; the libraries only translate them to words (and the
# French port's words are mostly outside its lexicon). Each known emoji becomes a token scored in both lexicons,
# on VADER's -4..4 scale. 😭 is left out on purpose: it is used for grief and for overwhelming joy alike.
EMOJI_VALENCE = {
    "emojiheart": (2.5, "❤💕💖💗💙💚💛🧡💜🤍🥰😍😘"),
    "emojismile": (2.0, "😊🙂😀😃😄😁🤗😋🥳🎉"),
    "emojiapproval": (1.8, "👏👍👌💯"),
    "emojisupport": (1.5, "🙏💪"),
    "emojiangry": (-2.5, "😡🤬😠🤮🤢"),
    "emojisad": (-1.8, "😢😞😔😟☹🙁😱"),
    "emojidisapproval": (-2.0, "👎💔"),
    "emojiannoyed": (-1.5, "😒🙄😤"),
}
_EMOJI_TOKEN = {emoji: token for token, (_, emojis) in EMOJI_VALENCE.items() for emoji in emojis}

# VADER works best sentence by sentence (its authors average sentences): otherwise a negation reaches across a
# full stop ("Day 30 without a cigarette!!! Never felt better").
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
# French puts the first part of a negation before the verb and the second after ("je n'aime pas"); the French
# port, like VADER, only looks for negators before the sentiment word. Moving "pas" before the verb lets it see
# the negation. Two idioms mean the opposite of their words.
_FR_NEGATION = re.compile(r"\bn(?:e\s+|')\s*(\w+)\s+(pas|jamais|plus|rien|guère|point)\b", re.IGNORECASE)
_FR_IDIOMS = ((re.compile(r"\bpas terrible\b", re.IGNORECASE), "décevant"),
              (re.compile(r"\bpas mal\b", re.IGNORECASE), "bon"))
# VADER reads "never" as negating "better".
_EN_IDIOMS = ((re.compile(r"\bnever (?:felt|been|looked|tasted) better\b", re.IGNORECASE), "best"),)

# ---------------------------------------------------------------------------------------------------- spam

_URL = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|info|io|co|me|ly|gl|gd|at|cc|gy|ee|xyz|top|shop"
    r"|store|site|online|click|link|live|club|biz|buzz|icu|tk|fr|uk|de|es|it|be|ch|ca|ru)\b(?:/\S*)?",
    re.IGNORECASE,
)
_SHORTENER = re.compile(
    r"\b(?:bit\.ly|tinyurl\.com|t\.co|t\.me|goo\.gl|ow\.ly|is\.gd|cutt\.ly|rebrand\.ly|shorturl\.at|buff\.ly"
    r"|tiny\.cc|rb\.gy|linktr\.ee)/",
    re.IGNORECASE,
)
_CHEAP_TLD = re.compile(r"\.(?:xyz|top|shop|store|site|online|click|link|live|club|biz|info|buzz|icu|tk)\b",
                        re.IGNORECASE)
_BAIT_IN_URL = re.compile(r"verif|login|secure|account|compte|support|update|confirm|suivi|livraison|delivery"
                          r"|wallet|outlet|promo|gratuit|free|cash|cadeau|gift", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{7,}\d")
_MENTION = re.compile(r"(?<![\w@])@\w[\w.]*")
_HASHTAG = re.compile(r"(?<!\w)#\w+")
_PROMO_EMOJI = re.compile("[💰💸🤑🚀💎📈👉]")
_SHOUTING = re.compile(r"[!?>]{3,}")


def _words(*patterns: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(patterns) + r")(?!\w)", re.IGNORECASE)


# Vocabulary signals, French and English. Weights are the chance, on their own, that a comment showing the
# signal is spam: one signal rarely suffices (an offer of help may say "message me", a donor "$50"); two do.
SPAM_VOCABULARY: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    ("private messaging", 0.4, _words(
        r"whatsapp", r"telegram", r"on signal", r"wickr", r"dm(?: me| us| for)?", r"pm me", r"inbox me",
        r"(?:message|write to) me privately", r"en (?:mp|privé)",
    )),
    # Mutual aid runs on "text me, I have a pump": asking to be contacted is weak evidence on its own.
    ("contact me", 0.15, _words(
        r"message me", r"text me", r"call me", r"email me", r"contact (?:me|her|him|us)",
        r"écri(?:vez|s)[- ](?:moi|nous)", r"contactez[- ](?:moi|la|le|nous)", r"appelez[- ]moi", r"par mail",
    )),
    ("get-rich", 0.45, _words(
        r"bitcoin", r"btc", r"eth", r"ethereum", r"crypto\w*", r"usdt", r"forex", r"trading", r"binance",
        r"passive income", r"revenus? passifs?", r"invest(?:ing|ment|or)?", r"investi(?:r|ssez|ssements?)",
        r"(?:guaranteed|daily|weekly) profits?", r"profits? garantis", r"earn(?:ed|ing)?",
        r"made \$?\d[\d,.]*\$?", r"gagné \d[\d\s,.]*", r"argent facile", r"turn \$?\d+", r"transformez \d+",
        r"work[- ]from[- ]home", r"working from home", r"travail à domicile", r"depuis chez moi",
        r"(?:personal )?loans?", r"prêt entre particuliers", r"prêt rapide",
    )),
    ("prize", 0.45, _words(
        r"congratulations", r"félicitations", r"you(?:'ve| have) been selected", r"sélectionnée?s?",
        r"winner", r"giveaway", r"giving away", r"gift ?card", r"bon d'achat", r"carte cadeau",
        r"claim (?:it|yours|your|now|here)", r"réclamez", r"free iphone", r"iphone \d+", r"win", r"gagnez",
        r"click here", r"cliquez", r"link in (?:my )?bio", r"lien dans (?:ma )?bio",
    )),
    ("follow-bait", 0.55, _words(
        r"follow (?:me|back|for follow)", r"follow me back", r"followforfollow", r"f4f", r"like4like", r"l4l",
        r"(?:free|real|buy|cheap) followers", r"followers for free", r"abonnés (?:gratuits|réels)",
        r"suivez[- ]moi", r"abonnez[- ]vous", r"check (?:out )?my (?:profile|page|bio)",
        r"(?:regardez?|voir|allez voir) (?:ma|mon) (?:bio|profil|page)", r"more likes", r"plus de likes",
        r"promote it", r"boostez[- ]le", r"sell (?:real )?followers", r"vendons des abonnés",
    )),
    ("phishing", 0.5, _words(
        r"verify your account", r"vérifiez votre compte", r"confirm your identity", r"confirmez votre identité",
        r"lose access", r"perdez l'accès", r"account has been (?:flagged|reported|restricted)",
        r"compte a été (?:signalé|restreint|bloqué)", r"will be (?:disabled|suspended|locked|deleted)",
        r"sera (?:désactivée?|suspendue?|supprimée?)", r"community standards", r"non-respect des règles",
        r"redelivery", r"frais de (?:livraison|réexpédition)", r"parcel is waiting", r"colis est en attente",
        r"hacked account", r"compte piraté", r"recover your (?:hacked )?account", r"récupérez[- ]le",
    )),
    ("romance or adult", 0.5, _words(
        r"hot singles", r"rencontres? coquines?", r"interested in you", r"intéressée? par vous", r"hello dear",
        r"bonjour mon cher", r"sexy", r"xxx",
    )),
    ("pressure", 0.2, _words(
        r"limited time", r"act now", r"hurry", r"guaranteed", r"garantie?s?", r"offre limitée",
        r"serious people only", r"personnes sérieuses", r"100 ?%",
    )),
)
SPAM_THRESHOLD = 0.5  # a score from here is spam


def spam_signals(text: str) -> dict[str, float]:
    """The spam signals found in a text, each with its weight."""
    found = _link_signals(text)
    found.update((name, weight) for name, weight, pattern in SPAM_VOCABULARY if pattern.search(text))
    if len(_HASHTAG.findall(text)) >= 3:
        found["hashtags"] = 0.3
    if len(_MENTION.findall(text)) >= 2:
        found["mentions"] = 0.15
    if _PROMO_EMOJI.search(text):
        found["money or pointing emoji"] = 0.2
    letters = [c for c in _URL.sub(" ", text) if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) >= 0.6 * len(letters):
        found["all caps"] = 0.2
    if _SHOUTING.search(text):
        found["repeated punctuation"] = 0.1  # enthusiastic people do it too: a nudge, never a verdict
    return found


def _link_signals(text: str) -> dict[str, float]:
    """Links, phone numbers and addresses: ways to take the reader off the platform."""
    found: dict[str, float] = {}
    urls = _URL.findall(_EMAIL.sub(" ", text))
    if urls:
        found["link"] = 0.25
    if _SHORTENER.search(text):
        found["shortened link"] = 0.35  # hides the destination: rare in genuine comments
    if any(_CHEAP_TLD.search(url) for url in urls):
        found["cheap domain"] = 0.25
    if any(_BAIT_IN_URL.search(url) for url in urls):
        found["bait in link"] = 0.3  # "meta-support-verify.com", "free-cash-now"
    if any(_is_phone(m) for m in _PHONE.findall(text)):
        found["phone number"] = 0.3
    if _EMAIL.search(text):
        found["email address"] = 0.2
    return found


def _is_phone(candidate: str) -> bool:
    return 9 <= sum(c.isdigit() for c in candidate) <= 15  # E.164 numbers, not prices nor dates


def spam_score(text: str) -> float:
    """0..1: signals combined as independent evidence, 1 - prod(1 - weight)."""
    remaining = 1.0
    for weight in spam_signals(text).values():
        remaining *= 1.0 - weight
    return round(1.0 - remaining, 4)


# ---------------------------------------------------------------------------------------------------- analyzer

_NOISE = re.compile(rf"{_URL.pattern}|{_EMAIL.pattern}|{_MENTION.pattern}", re.IGNORECASE)


def _without_noise(text: str) -> str:
    """Text without links, addresses, mentions, phone numbers and hash signs: none of it is language or feeling."""
    text = _NOISE.sub(" ", text)
    text = _PHONE.sub(lambda m: " " if _is_phone(m[0]) else m[0], text)
    return text.replace("#", " ").replace("\u2019", "'")


def _with_emoji_tokens(text: str) -> str:
    text = text.replace("\ufe0f", "")  # the variation selector of "❤️"
    return "".join(f" {_EMOJI_TOKEN[c]} " if c in _EMOJI_TOKEN else c for c in text)


def _french_vader() -> Any:
    """The French port's analyzer; its module has import-time side effects that are undone here."""
    path = list(sys.path)
    with warnings.catch_warnings():
        # fuzzywuzzy (used by the port's fuzzy matching only, which we do not call) warns it lacks a C speedup.
        warnings.filterwarnings("ignore", message="Using slow pure-python SequenceMatcher", category=UserWarning)
        # The port has a regex literal "\.{2,}"; compiled without cached bytecode, it warns (an error under -W).
        for category in (DeprecationWarning, SyntaxWarning):
            warnings.filterwarnings("ignore", message="invalid escape sequence", category=category)
        from vaderSentiment_fr.vaderSentiment import SentimentIntensityAnalyzer
    sys.path[:] = path  # the module appends "/" to sys.path
    return SentimentIntensityAnalyzer()


def _feeling(scorer: Callable[[str], float], sentences: list[str]) -> float:
    """Mean score of the sentences that carry feeling: plain facts around a complaint should not dilute it."""
    scores = [score for score in map(scorer, sentences) if abs(score) >= VADER_NEUTRAL]
    return sum(scores) / len(scores) if scores else 0.0


def _label(score: float) -> str:
    if score >= POSITIVE_FROM:
        return "POSITIVE"
    if score <= NEGATIVE_FROM:
        return "NEGATIVE"
    return "NEUTRAL"


class Analyzer:
    """Language, sentiment and spam score of a text; build once per process, share between threads."""

    def __init__(self, *, low_memory: bool = False) -> None:
        """Load the models (~250 MB resident); `low_memory` (~30 MB) detects short texts' language less well."""
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        languages = [Language.from_iso_code_639_1(IsoCode639_1.from_str(code)) for code in LANGUAGES]
        builder = LanguageDetectorBuilder.from_languages(*languages).with_minimum_relative_distance(
            MIN_RELATIVE_DISTANCE
        )
        # Preloading moves the models' loading to start-up rather than to the first comments' latency.
        builder = builder.with_low_accuracy_mode() if low_memory else builder.with_preloaded_language_models()
        self._detector = builder.build()
        self._english = SentimentIntensityAnalyzer()
        self._french = _french_vader()
        for vader, topic in ((self._english, TOPIC_WORDS_EN), (self._french, TOPIC_WORDS_FR)):
            for word in topic:
                vader.lexicon.pop(word, None)
            vader.lexicon.update({token: valence for token, (valence, _) in EMOJI_VALENCE.items()})

    def analyze(self, text: str) -> Analysis:
        """The analysis of one text (deterministic; safe to call from several threads)."""
        plain = _without_noise(text)
        language = self._language(plain)
        score = self._sentiment(plain, language)
        return Analysis(language, _label(score), score, spam_score(text))

    def _language(self, plain: str) -> str | None:
        """ISO 639-1 code of a text without links or mentions, or None when too short or ambiguous."""
        if sum(c.isalpha() for c in plain) < MIN_LETTERS:
            return None
        detected = self._detector.detect_language_of(plain)
        return detected.iso_code_639_1.name.lower() if detected else None

    def _sentiment(self, plain: str, language: str | None) -> float:
        sentences = [s for s in _SENTENCE_END.split(_with_emoji_tokens(plain)) if s.strip()]
        scorers: dict[str, Callable[[str], float]] = {"en": self._score_english, "fr": self._score_french}
        if language in scorers:
            score = _feeling(scorers[language], sentences)
        else:  # other languages and the undecided: whichever lexicon recognises more feeling
            score = max((_feeling(scorer, sentences) for scorer in scorers.values()), key=abs)
        if plain.rstrip().endswith("?"):
            score *= QUESTION_DAMPING
        return round(score, 4)

    def _score_english(self, text: str) -> float:
        for idiom, meaning in _EN_IDIOMS:
            text = idiom.sub(meaning, text)
        return float(self._english.polarity_scores(text)["compound"])

    def _score_french(self, text: str) -> float:
        text = _FR_NEGATION.sub(r"\2 \1", text)
        for idiom, meaning in _FR_IDIOMS:
            text = idiom.sub(meaning, text)
        return float(self._french.polarity_scores(text)["compound"])


# ---------------------------------------------------------------------------------------------------- evaluation


def evaluate(path: str | Path, analyzer: Analyzer | None = None) -> dict[str, Any]:
    """Accuracy of language, sentiment and spam (at SPAM_THRESHOLD) over a labelled JSONL file, per language."""
    analyzer = analyzer or Analyzer()
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    analyzer.analyze("warm-up")
    started = time.perf_counter()
    results = [analyzer.analyze(row["text"]) for row in rows]
    elapsed = time.perf_counter() - started

    def accuracy(pairs: Iterable[tuple[dict[str, Any], Analysis]]) -> dict[str, float | int]:
        pairs = list(pairs)
        n = len(pairs) or 1
        return {
            "count": len(pairs),
            "language": round(sum(a.language == r["language"] for r, a in pairs) / n, 3),
            "sentiment": round(sum(a.sentiment == r["sentiment"] for r, a in pairs) / n, 3),
            "spam": round(sum((a.spam_score >= SPAM_THRESHOLD) == r["spam"] for r, a in pairs) / n, 3),
        }

    pairs = list(zip(rows, results, strict=True))
    report: dict[str, Any] = {"overall": accuracy(pairs)}
    for language in sorted({r["language"] or "none" for r in rows}):
        report[language] = accuracy(p for p in pairs if (p[0]["language"] or "none") == language)
    report["mean_ms"] = round(elapsed / len(rows) * 1000, 3)
    return report


if __name__ == "__main__":
    print(json.dumps(evaluate(sys.argv[1] if len(sys.argv) > 1 else "tests/data/moderation_labelled.jsonl"),
                     indent=2))
