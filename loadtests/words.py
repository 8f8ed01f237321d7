"""Plain English words for the random dataset: prompts are valid text (any tokenizer, any chat template).

NOTE: lowercase ASCII only, no punctuation: with byte-level BPE tokenizers almost every word below is one token
(with its leading space), so a prompt of N words is close to N tokens even when no tokenizer is given.
"""

WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        """
    time year people way day man thing woman life child world school state family student group country problem
    hand part place case week company system program question work government number night point home water room
    mother area money story fact month lot right study book eye job word business issue side kind head house
    service friend father power hour game line end member law car city community name president team minute idea
    kid body information back parent face others level office door health person art war history party result
    change morning reason research girl guy moment air teacher force education foot boy age policy music market
    sense nation plan college interest death experience effect use class control care field development role
    effort rate heart drug show leader light voice wife police mind price report decision son view relationship
    town road arm difference value building action model season society tax director position player record paper
    space ground form event official matter center couple site project activity star table need court oil
    situation cost industry figure street image phone data picture practice piece land product doctor wall
    patient worker news test movie north love support technology step baby computer type attention film tree
    source organization hair window evidence population site garden river stone bridge island forest valley
    mountain ocean summer winter spring autumn bread apple orange lemon coffee paper pencil letter music garden
    make take come give look find think tell become leave feel bring begin keep hold write stand hear let mean
    set meet run pay sit speak lie lead read grow lose fall send build stay open walk win offer remember consider
    appear buy wait serve die expect stop reach kill raise pass sell decide return explain hope develop carry
    break receive agree create drive learn follow play move live believe happen include continue change watch
    good new first last long great little own other old right big high different small large next early young
    important few public bad same able free sure clear full special easy strong whole real best better true
    simple quick quiet bright dark warm cold soft hard green blue red yellow white black brown heavy light
    often always never still also just very really almost already again away together later today tomorrow
    """.split()
    )
)
