// Reverse the order of words but keep each word intact.
const reverseWords = (s) => s.trim().split(/\s+/).reverse().join(" ");

console.log(reverseWords("  the sky   is blue ")); // "blue is sky the"
