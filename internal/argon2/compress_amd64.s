//go:build amd64 && !purego

#include "textflag.h"

// The BlaMka compression G of Argon2 (RFC 9106 section 3.5-3.6) with AVX2:
// a 16-word P input is held as four YMM registers A B C D (words 0-3, 4-7,
// 8-11, 12-15); the column step works lane-wise, the diagonal step rotates
// B, C, D by one, two, three lanes with VPERMQ first and back after.

DATA ·rot24<>+0(SB)/8, $0x0201000706050403
DATA ·rot24<>+8(SB)/8, $0x0a09080f0e0d0c0b
DATA ·rot24<>+16(SB)/8, $0x0201000706050403
DATA ·rot24<>+24(SB)/8, $0x0a09080f0e0d0c0b
GLOBL ·rot24<>(SB), RODATA|NOPTR, $32

DATA ·rot16<>+0(SB)/8, $0x0100070605040302
DATA ·rot16<>+8(SB)/8, $0x09080f0e0d0c0b0a
DATA ·rot16<>+16(SB)/8, $0x0100070605040302
DATA ·rot16<>+24(SB)/8, $0x09080f0e0d0c0b0a
GLOBL ·rot16<>(SB), RODATA|NOPTR, $32

// a += b + 2*lo32(a)*lo32(b)
#define BLAMKA(a, b, t) \
	VPMULUDQ b, a, t; \
	VPADDQ   t, t, t; \
	VPADDQ   b, a, a; \
	VPADDQ   t, a, a

#define GB(A, B, C, D) \
	BLAMKA(A, B, Y4); VPXOR A, D, D; VPSHUFD $0xB1, D, D; \
	BLAMKA(C, D, Y4); VPXOR C, B, B; VPSHUFB Y14, B, B; \
	BLAMKA(A, B, Y4); VPXOR A, D, D; VPSHUFB Y15, D, D; \
	BLAMKA(C, D, Y4); VPXOR C, B, B; VPSRLQ $63, B, Y4; VPADDQ B, B, B; VPOR Y4, B, B

#define ROUND \
	GB(Y0, Y1, Y2, Y3); \
	VPERMQ $0x39, Y1, Y1; VPERMQ $0x4E, Y2, Y2; VPERMQ $0x93, Y3, Y3; \
	GB(Y0, Y1, Y2, Y3); \
	VPERMQ $0x93, Y1, Y1; VPERMQ $0x4E, Y2, Y2; VPERMQ $0x39, Y3, Y3

// func compressAVX2(dst, x, y *block, xor bool)
TEXT ·compressAVX2(SB), 0, $1024-25
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVB xor+24(FP), R9
	LEAQ 0(SP), R8 // Q: 1024 bytes of frame
	VMOVDQU ·rot24<>(SB), Y14
	VMOVDQU ·rot16<>(SB), Y15

	// Q = X ^ Y
	XORQ AX, AX
init:
	VMOVDQU (SI)(AX*1), Y0
	VPXOR   (DX)(AX*1), Y0, Y0
	VMOVDQU Y0, (R8)(AX*1)
	ADDQ    $32, AX
	CMPQ    AX, $1024
	JB      init

	// rows: 16 consecutive words (128 bytes)
	MOVQ R8, BX
	MOVQ $8, CX
rows:
	VMOVDQU 0(BX), Y0
	VMOVDQU 32(BX), Y1
	VMOVDQU 64(BX), Y2
	VMOVDQU 96(BX), Y3
	ROUND
	VMOVDQU Y0, 0(BX)
	VMOVDQU Y1, 32(BX)
	VMOVDQU Y2, 64(BX)
	VMOVDQU Y3, 96(BX)
	ADDQ    $128, BX
	DECQ    CX
	JNZ     rows

	// columns: word pairs 2i, 2i+1 of every row (16 bytes every 128)
	MOVQ R8, BX
	MOVQ $8, CX
cols:
	VMOVDQU     0(BX), X0
	VINSERTI128 $1, 128(BX), Y0, Y0
	VMOVDQU     256(BX), X1
	VINSERTI128 $1, 384(BX), Y1, Y1
	VMOVDQU     512(BX), X2
	VINSERTI128 $1, 640(BX), Y2, Y2
	VMOVDQU     768(BX), X3
	VINSERTI128 $1, 896(BX), Y3, Y3
	ROUND
	VMOVDQU      X0, 0(BX)
	VEXTRACTI128 $1, Y0, 128(BX)
	VMOVDQU      X1, 256(BX)
	VEXTRACTI128 $1, Y1, 384(BX)
	VMOVDQU      X2, 512(BX)
	VEXTRACTI128 $1, Y2, 640(BX)
	VMOVDQU      X3, 768(BX)
	VEXTRACTI128 $1, Y3, 896(BX)
	ADDQ         $16, BX
	DECQ         CX
	JNZ          cols

	// dst = Q ^ X ^ Y, or dst ^= Q ^ X ^ Y (x and y are read before dst,
	// which may alias them, is written at the same offset)
	XORQ AX, AX
fin:
	VMOVDQU (R8)(AX*1), Y0
	VPXOR   (SI)(AX*1), Y0, Y0
	VPXOR   (DX)(AX*1), Y0, Y0
	TESTB   R9, R9
	JZ      store
	VPXOR   (DI)(AX*1), Y0, Y0
store:
	VMOVDQU Y0, (DI)(AX*1)
	ADDQ    $32, AX
	CMPQ    AX, $1024
	JB      fin
	VZEROUPPER
	RET
