"""The built-in prompt sets of `lokal bench --workload` (the project's own text, written for it).

chat        short, varied user questions
long        one passage of about 800 tokens, then a question on it
grounded    answers that reuse the prompt: extract fields to JSON, edit a given text, quote a policy, read a tool
            result back (what prompt-lookup speculation speeds up)
"""

from __future__ import annotations

CHAT_QUESTIONS: tuple[str, ...] = (
    "What is the difference between a list and a tuple in Python?",
    "Give me three ideas for a quick vegetarian dinner that takes less than twenty minutes to cook.",
    "Why is the sky blue during the day but red and orange at sunset?",
    "Explain in two sentences what a hash function is and why it should be hard to reverse.",
    "How many minutes are there in a week? Show the calculation step by step.",
    "Write a short, friendly reminder to a colleague that the team meeting moved from Tuesday to Thursday.",
    "What should I pack for a three-day hiking trip in the mountains in early autumn when the nights are cold?",
    "Summarise the plot of a detective story in which the butler turns out to be innocent.",
    "Is it better to water garden plants in the morning or in the evening, and why?",
    "Translate 'where is the train station, please?' into French, Spanish and German.",
    "What does a load balancer do, and when does a small web service need one?",
    "Suggest a name for a bakery that only sells bread made with sourdough.",
    "How do I politely decline an invitation to a wedding of a distant relative without causing offence?",
    "Explain compound interest to a twelve-year-old using an example with pocket money saved over five years.",
    "List four ways to make a slow laptop feel faster without buying new hardware.",
    "What is the boiling point of water at the top of a high mountain, and why is it lower than at sea level?",
    "Write a haiku about the first snow of winter falling on a quiet city street.",
    "Why do cats purr? Give the main theories scientists have proposed.",
    "I have eggs, spinach, cheese and an onion. What can I cook for breakfast?",
    "What are the pros and cons of working from home for a small team of software developers who rarely meet?",
    "How does a refrigerator keep food cold? Describe the cycle in simple terms.",
    "Give me a short workout I can do in a hotel room with no equipment in fifteen minutes.",
    "What questions should I ask a landlord before signing a one-year lease on a flat in a city I do not know?",
    "Explain the rules of chess castling, including the situations in which it is not allowed.",
)

PASSAGE = """\
The town of Harrowmere sits where a slow river meets a shallow bay, and for three hundred years its people \
have ground their grain with the tide. The mill stands on a stone causeway across the mouth of a tidal pond. \
When the sea rises, water flows into the pond through a row of wooden gates that swing open on their own; when \
the tide turns, the same gates are pushed shut by the weight of the water behind them, and the miller lets the \
stored water out under a great wheel. Two tides a day give the mill about eight hours of work, but never at the \
same hours, so the miller's day moves forward by almost an hour every day, and the family who ran the mill kept \
a tide table nailed to the door beside the flour prices.

The first mill was built of timber in the year the harbour wall was finished. It burned down twice, once from a \
lamp left in the loft and once, according to the parish record, from "the heat of the stones running dry", which \
meant that the miller had let the millstones turn with no grain between them. The present building is of grey \
stone with a slate roof. Its wheel is nearly five metres across and is made of oak and iron; the oak paddles are \
replaced every twelve years or so, and the town keeps a stack of seasoned oak planks under the market hall for \
that purpose.

At its busiest the mill ground wheat, barley and oats for farms as far as a day's cart ride inland. Farmers paid \
the miller with a share of the flour rather than with money: one part in sixteen was the custom, and a brass \
measure used to take that share is still kept in the mill. Bread from Harrowmere flour was said to be coarse but \
good, and bakers in the county town advertised it by name. In wet years the grain arrived damp and had to be \
dried in a kiln beside the mill before it could be ground, which added two days to the work and a smell of smoke \
to the flour that some customers liked and others did not.

The decline began when a steam mill opened near the railway station. It could work at any hour and did not \
depend on the moon. Within twenty years most farmers sent their grain by rail, and the tide mill ground only for \
a few families and for animal feed. The last commercial miller, a woman named Edith Marlowe, kept it running \
until the great storm that broke the causeway and flooded the pond with sand. She wrote in her account book that \
the storm had done in one night what the railway had failed to do in forty years.

The mill stood empty for a long time. Children swam in what was left of the pond, and the wheel rotted until \
only its iron rim remained. A group of volunteers formed a trust to save it, raised money with concerts and a \
yearly fair, and rebuilt the causeway with help from an engineer who had restored tide mills elsewhere. The \
gates were copied from an old drawing found in the parish chest, and a new wheel was built by a boat yard down \
the coast. Today the mill grinds on summer weekends, visitors can buy its flour in paper bags, and the tide \
table is nailed to the door again, beside a notice that explains why the opening hours change every day.

Scientists have also taken an interest. Because the pond fills and empties twice a day, its mud holds a record \
of the bay's water over centuries, and cores taken from it show layers of sand left by storms, including the one \
that closed the mill. The trust now measures the height of every tide at the gates, and its records are used by \
a university to study how the level of the sea has changed along this part of the coast.\
"""

PASSAGE_QUESTIONS: tuple[str, ...] = (
    "Why does the miller's working day move forward by almost an hour every day?",
    "How did farmers pay the miller, and what share was customary?",
    "What caused the two fires that destroyed the first mill?",
    "What finally ended commercial milling at Harrowmere, according to the text?",
    "How did the volunteers rebuild the mill, and where did the design of the gates come from?",
    "Why is the mud of the pond useful to scientists?",
    "Summarise the history of the mill in three sentences.",
    "What did damp grain mean for the mill's work and for the taste of its flour?",
)

#: Prompts whose answers reuse long spans of the prompt: quoting, extracting fields, editing a given text,
#: answering from a retrieved document, reading a tool's result back. Speculative decoding by prompt lookup wins
#: most on these (docs/engine.md); `--workload grounded` measures it on a user's own model.
_RECORD = """\
Order 48213 was placed on 14 March by Marta Kowalczyk of 12 Linden Row, Eastwick, for delivery to the same \
address. It contains two boxes of A4 recycled paper at 18.50 each, one desk lamp with a brass finish at 42.00, \
and a pack of twelve blue gel pens at 6.75. Shipping was charged at 4.95 and the order was paid by card. The \
customer asked for the parcel to be left with the neighbour at number 14 if nobody is home, and to call \
07700 900123 before delivery."""

_MEETING = """\
The planning group met on Tuesday at ten in the small conference room. Present were Ana, Bilal, Chen and \
Dorota; Erik sent apologies. The group agreed to move the release of version 2.4 from the first to the third \
week of May, because the translation of the help pages is not finished. Bilal will ask the printer for a new \
quote for the user guides, and Chen will write to the three pilot customers to explain the new date. The next \
meeting will be on Tuesday at ten in the same room, and Dorota will bring the updated budget."""

_POLICY = """\
Section 4. Returns. A customer may return any item within thirty days of delivery for a full refund, provided \
the item is unused and in its original packaging. Items bought in a sale may be returned within fourteen days \
and are refunded as store credit. The customer pays for return shipping unless the item arrived damaged or was \
not what was ordered, in which case the shop sends a prepaid label within two working days. Refunds are made to \
the original payment method within five working days of the shop receiving the item. Personalised items, \
opened software and gift cards cannot be returned."""

_FUNCTION = """\
def monthly_payment(principal, annual_rate, years):
    \"\"\"The fixed monthly payment of a loan of `principal` at `annual_rate` (0.05 for 5 %) over `years`.\"\"\"
    months = years * 12
    rate = annual_rate / 12
    if rate == 0:
        return principal / months
    factor = (1 + rate) ** months
    return principal * rate * factor / (factor - 1)"""

_TOOL_RESULT = """\
{"station": "Harrowmere Quay", "observed_at": "2026-11-30T06:00:00Z", "temperature_c": 7.4, \
"wind_speed_kmh": 22, "wind_direction": "south-west", "humidity_percent": 86, "pressure_hpa": 1004, \
"tide": {"next_high": "2026-11-30T09:41:00Z", "height_m": 4.2, "next_low": "2026-11-30T15:58:00Z"}, \
"warnings": ["gale warning for coastal waters after 18:00", "high tide may flood the causeway path"]}"""

GROUNDED: tuple[str, ...] = (
    f"Extract the order as JSON with the keys order_number, customer, address, items (each with name, quantity "
    f"and unit_price), shipping and delivery_instructions. Use the exact wording of the text for every value.\n\n"
    f"{_RECORD}",
    f"Rewrite the meeting notes below exactly as they are, changing only the day of the next meeting from Tuesday "
    f"to Thursday.\n\n{_MEETING}",
    f"Answer from the policy below, quoting the sentences you rely on word for word: can a customer return a "
    f"sale item that arrived damaged, and who pays for the shipping?\n\n{_POLICY}",
    f"Add a check to this function that raises ValueError when years is not positive, and return the whole "
    f"function with the change.\n\n{_FUNCTION}",
    f"The weather tool returned the result below. Tell the user the current conditions and both warnings, "
    f"keeping the numbers and the warning texts exactly as given.\n\n{_TOOL_RESULT}",
    f"Copy the sentence of the passage that explains how the tide gates work, word for word.\n\n{PASSAGE}",
    f"List the action items from the meeting notes as a bulleted list, one per person, in the notes' own "
    f"words.\n\n{_MEETING}",
    f"Correct the spelling of 'Linden Row' to 'Lynden Row' in the order below and return the whole text "
    f"otherwise unchanged.\n\n{_RECORD}",
)

#: Requests for long open-ended answers (stories, essays, explanations): what the engine and server benchmarks
#: decode, and the open-ended half of the speculative-decoding tests.
LONG_FORM = (
    "Write a long story about a lighthouse keeper.",
    "Explain in detail how a bicycle works.",
    "Describe the history of the printing press at length.",
    "Write a long letter to a friend about a journey by train.",
    "Explain machine learning in simple terms, with many examples.",
    "Describe a busy market in a large city in great detail.",
    "Write a long essay about the ocean.",
    "Tell a long fairy tale about a clever fox.",
)
