"""Everyday words shared by the generators, and ``scene``: short descriptive sentences
that use a broad vocabulary (so the tokenizer and the model see more than the task words)."""

from __future__ import annotations

import random

# IOI uses "the {place}" and "a {obj}": objects start with a consonant sound.
PLACES: tuple[str, ...] = (
    "store", "park", "school", "market", "office", "station", "garden", "library",
    "hospital", "beach", "restaurant", "cafe", "museum", "house", "farm", "lake",
    "bank", "zoo", "gym", "bakery", "harbor", "theater", "square", "hotel",
    "airport", "castle", "cinema", "church", "factory", "forest", "island", "kitchen",
    "mountain", "palace", "playground", "pool", "post office", "river", "shop", "stadium",
)
OBJECTS: tuple[str, ...] = (
    "drink", "book", "ball", "ring", "letter", "gift", "lemon", "pen", "bag", "flower",
    "cup", "hat", "coin", "map", "card", "toy", "cake", "kite", "basket", "snack",
    "sandwich", "candle", "scarf", "shell", "bottle", "blanket", "bucket", "camera",
    "comb", "compass", "doll", "feather", "glove", "guitar", "hammer", "jacket", "jar",
    "kettle", "ladder", "lantern", "mirror", "necklace", "notebook", "painting", "pillow",
    "plate", "puzzle", "radio", "ribbon", "rope", "ruler", "saucer", "shovel", "spoon",
    "stamp", "sweater", "teapot", "ticket", "towel", "wallet", "watch", "whistle",
)
FOODS: tuple[str, ...] = (
    "apples", "bread", "cheese", "soup", "rice", "pears", "eggs", "carrots", "plums",
    "cookies", "beans", "oranges", "grapes", "noodles", "pie", "tea", "butter", "cherries",
    "corn", "peas", "potatoes", "tomatoes", "onions", "lemons", "melons", "peaches",
    "strawberries", "bananas", "pancakes", "muffins", "salad", "pasta", "pizza", "honey",
    "jam", "milk", "yogurt", "cereal", "walnuts", "almonds", "chocolate", "candy",
    "porridge", "dumplings", "sausages", "biscuits", "waffles", "popcorn", "cabbage", "spinach",
)
ANIMALS: tuple[str, ...] = (
    "ant", "bat", "bear", "bee", "beetle", "bison", "camel", "crab", "crane", "crow", "deer",
    "dolphin", "donkey", "dove", "eagle", "eel", "elephant", "falcon", "ferret", "finch",
    "gecko", "giraffe", "goose", "gorilla", "hamster", "hare", "hawk", "hedgehog", "heron",
    "hippo", "hornet", "hyena", "jaguar", "kangaroo", "koala", "lamb", "lark", "leopard",
    "lion", "lizard", "llama", "lobster", "mole", "monkey", "moose", "moth", "mule", "newt",
    "octopus", "otter", "owl", "ox", "panda", "parrot", "peacock", "pelican", "penguin",
    "pigeon", "pony", "raccoon", "raven", "rhino", "robin", "salmon", "seal", "shark",
    "shrimp", "skunk", "sloth", "snail", "snake", "sparrow", "spider", "squid", "squirrel",
    "stork", "swan", "tiger", "toad", "trout", "turkey", "turtle", "walrus", "weasel",
    "whale", "wren", "yak", "zebra",
)
COLORS: tuple[str, ...] = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "brown",
                           "black", "white", "gray", "golden", "silver")
DESCRIPTIONS: tuple[str, ...] = (
    "tiny", "huge", "shiny", "dusty", "soft", "hard", "smooth", "rough", "bright", "dark",
    "warm", "cold", "wet", "dry", "clean", "dirty", "empty", "full", "light", "heavy",
    "round", "square", "sharp", "strange", "famous", "ordinary", "beautiful", "ugly",
    "noisy", "silent", "fresh", "rotten", "sweet", "sour", "bitter", "salty", "fancy",
    "plain", "modern", "ancient", "broken", "precious", "fragile", "sturdy", "lovely",
    "gentle", "fierce", "clever", "lazy", "busy", "wild", "friendly", "curious", "brave",
)
FEELINGS: tuple[str, ...] = ("happy", "sad", "proud", "angry", "calm", "nervous", "excited",
                             "sleepy", "bored", "surprised", "worried", "glad", "cheerful",
                             "lonely", "grateful", "confused", "hopeful", "relaxed")
WEATHER: tuple[str, ...] = ("sunny", "rainy", "windy", "cloudy", "snowy", "foggy", "stormy",
                            "chilly", "warm", "hot", "bright", "gloomy")
ACTIONS: tuple[str, ...] = (  # past tense, transitive: "{N} {action} the {obj}"
    "painted", "fixed", "carried", "washed", "opened", "closed", "dropped", "lost", "found",
    "cleaned", "hid", "sold", "borrowed", "wrapped", "polished", "repaired", "packed",
    "measured", "weighed", "decorated", "examined", "counted", "moved", "lifted", "picked up",
    "put away", "threw away", "checked", "bought", "shared", "kept", "admired", "noticed",
    "dusted", "folded", "hung up", "filled", "emptied", "tested", "studied",
)
HOBBIES: tuple[str, ...] = (
    "swim", "dance", "draw", "paint", "read", "write poems", "play chess", "play football",
    "play tennis", "ride a bike", "bake bread", "grow tomatoes", "climb trees", "fly kites",
    "go fishing", "go camping", "knit", "sing", "skate", "ski", "sew", "build models",
    "collect stamps", "watch birds", "take photos", "cook", "hike", "run", "jog", "garden",
)
INSTRUMENTS: tuple[str, ...] = ("piano", "violin", "flute", "drum", "trumpet", "cello", "harp",
                                "guitar", "clarinet", "banjo", "trombone", "tuba")
VEHICLES: tuple[str, ...] = ("bike", "bus", "train", "boat", "truck", "tram", "taxi", "van",
                             "ship", "canoe", "wagon", "scooter", "tractor", "horse cart")
ROOMS: tuple[str, ...] = ("kitchen", "bedroom", "attic", "basement", "hall", "bathroom",
                          "garage", "study", "cellar", "living room", "dining room", "porch")
PLANTS: tuple[str, ...] = ("oak", "pine", "maple", "willow", "birch", "cedar", "palm", "cactus",
                          "fern", "ivy", "moss", "tulip", "daisy", "lily", "orchid", "sunflower",
                          "lavender", "clover", "bamboo", "poppy", "violet", "thistle", "hazel",
                          "elm", "ash tree", "chestnut", "apple tree", "rosebush", "mint", "basil")
TOOLS: tuple[str, ...] = ("saw", "drill", "wrench", "screwdriver", "chisel", "rake", "hoe",
                         "axe", "pliers", "brush", "needle", "thread", "glue", "tape", "sponge",
                         "broom", "mop", "funnel", "ladle", "sieve", "whisk", "grater", "stapler")
SEASONS: tuple[str, ...] = ("spring", "summer", "autumn", "winter")

DAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July",
                           "August", "September", "October", "November", "December")
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty",
)

_SCENES: tuple[str, ...] = (
    "{N} saw {a_animal} near the {place}. The {animal} looked {desc}.",
    "It was a {weather} day in {season}. {N} wore a {color} {cloth} and went to the {place}.",
    "{N} {action} the {obj} and felt {feeling}.",
    "In the {room} there was a {color} {obj}, a {desc} {obj2} and an old {obj3}.",
    "{N} plays the {instrument} every {day}.",
    "{N} likes to {hobby} in the {season}.",
    "{N} cooked {food} and {food2} for dinner.",
    "{N} took the {vehicle} to the {place} because it was {weather}.",
    "The {desc} {animal} slept in the {room}.",
    "{N} painted {a_animal} on the wall of the {room}. It was {color} and {desc}.",
    "For breakfast {N} had {food} with {food2}.",
    "{N} keeps a {desc} {obj} in the {room}.",
    "The {obj} in the {room} is {color}.",
    "{N} felt {feeling} when the {vehicle} arrived.",
    "{N} learned to {hobby} from a {desc} teacher.",
    "Behind the {place} grows a {desc} {plant}.",
    "{N} planted a {plant} next to the {plant2} in {season}.",
    "{N} borrowed a {tool} and a {tool2} to fix the {obj}.",
    "The {tool} was in the {room}, under a {color} {obj}.",
    "On a {weather} morning, {N} watched {a_animal} by the {place}.",
)
_CLOTHES = ("coat", "hat", "scarf", "sweater", "jacket", "dress", "shirt", "cap", "raincoat",
            "pair of boots", "pair of gloves", "skirt", "vest", "hoodie", "cloak")


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def scene(rng: random.Random, names: tuple[str, ...]) -> str:
    """One or two sentences of everyday description about a person from ``names``."""
    animal = rng.choice(ANIMALS)
    obj, obj2, obj3 = rng.sample(OBJECTS, 3)
    food, food2 = rng.sample(FOODS, 2)
    plant, plant2 = rng.sample(PLANTS, 2)
    tool, tool2 = rng.sample(TOOLS, 2)
    return rng.choice(_SCENES).format(
        N=rng.choice(names), animal=animal, a_animal=article(animal), place=rng.choice(PLACES),
        desc=rng.choice(DESCRIPTIONS), weather=rng.choice(WEATHER), season=rng.choice(SEASONS),
        color=rng.choice(COLORS), cloth=rng.choice(_CLOTHES), action=rng.choice(ACTIONS), obj=obj,
        obj2=obj2, obj3=obj3, feeling=rng.choice(FEELINGS), room=rng.choice(ROOMS),
        instrument=rng.choice(INSTRUMENTS), day=rng.choice(DAYS), hobby=rng.choice(HOBBIES),
        food=food, food2=food2, vehicle=rng.choice(VEHICLES), plant=plant, plant2=plant2,
        tool=tool, tool2=tool2)
